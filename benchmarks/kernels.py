"""Benchmark of the kernels: reference (numpy) vs CPU (numba) vs GPU (Triton, when CUDA exists).

    python benchmarks/kernels.py [--quick] [--out benchmarks/results/kernels.md]

Cases (issue 4): rasterize six 2048^2 views of 50k, 200k and 1M-face meshes; bake six views
into 2048^2 and 4096^2 textures; fill holes at 4096^2; plus the texture stage's CPU goal, six
views baked and filled into 2048^2. Times are the best of a few runs after a warm-up (numba
and Triton compile once), in milliseconds. The reference is too slow for the big cases: where
marked "est." it was timed on one view (or a slice of the faces) and scaled linearly.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kernels as K  # noqa: E402
from kernels.meshes import sphere_with_faces  # noqa: E402

VIEW = 2048


@dataclass
class Row:
    case: str
    reference_ms: float | None = None
    cpu_ms: float | None = None
    gpu_ms: float | None = None
    notes: list[str] = field(default_factory=list)


def best_of(fn: Callable[[], Any], runs: int, sync: Callable[[], None] | None = None) -> float:
    """Best wall time in ms over ``runs`` (after one warm-up call)."""
    fn()
    if sync:
        sync()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def colour_of(p: np.ndarray) -> np.ndarray:
    return (0.5 + 0.45 * np.sin(5.0 * p + np.array([0.0, 1.0, 2.0]))).astype(np.float32)


def render_views(pos: np.ndarray, faces: np.ndarray, res: int) -> list[K.BakeView]:
    out = []
    for v in K.upstream_views():
        r = K.rasterize(pos, faces, v.view_proj, res, res)
        out.append(K.BakeView(K.interpolate(r, faces, colour_of(pos.astype(np.float64))), v.view_proj, v.weight))
    return out


def gpu_tools() -> tuple[Any, Callable[[], None]] | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch, torch.cuda.synchronize


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the reference timings")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "kernels.md"))
    args = ap.parse_args()
    gpu = gpu_tools()
    if gpu is None:
        print("no GPU: the GPU column is empty (Triton needs a CUDA device; tests cover it in the interpreter)")
    rows: list[Row] = []
    views = K.upstream_views()
    meshes = {n: sphere_with_faces(n, 0.5) for n in (50_000, 200_000, 1_000_000)}

    # 1. Rasterize six 2048^2 views.
    for n_faces, (pos, faces, _) in meshes.items():
        row = Row(f"rasterize 6 x {VIEW}^2, {len(faces) / 1e3:.0f}k faces")
        six = lambda: [K.rasterize(pos, faces, v.view_proj, VIEW, VIEW) for v in views]  # noqa: E731
        row.cpu_ms = best_of(six, args.runs)
        if not args.quick:
            if n_faces <= 200_000:
                row.reference_ms = 6 * once(lambda: K.rasterize(pos, faces, views[0].view_proj, VIEW, VIEW, backend="reference"))
                row.notes.append("ref est. from 1 view x 6")
            else:
                part = faces[: len(faces) // 10]
                row.reference_ms = 60 * once(lambda: K.rasterize(pos, part, views[0].view_proj, VIEW, VIEW, backend="reference"))
                row.notes.append("ref est. from 1 view of 1/10 of the faces x 60")
        if gpu:
            torch, sync = gpu
            pt, ft = torch.from_numpy(pos).cuda(), torch.from_numpy(faces).cuda()
            row.gpu_ms = best_of(lambda: [K.rasterize(pt, ft, v.view_proj, VIEW, VIEW) for v in views], args.runs, sync)
        rows.append(row)
        print(row)
    one = Row(f"rasterize 1 x {VIEW}^2, 200k faces (goal < 150 ms)")
    pos, faces, _ = meshes[200_000]
    one.cpu_ms = best_of(lambda: K.rasterize(pos, faces, views[0].view_proj, VIEW, VIEW), args.runs)
    rows.append(one)
    print(one)

    # 2. Bake six views of the 200k mesh into 2048^2 and 4096^2; 3. fill at 4096^2.
    pos, faces, uv = meshes[200_000]
    uv = uv * np.float32(0.96) + np.float32(0.02)  # leave a gutter around the chart
    bake_views = render_views(pos, faces, VIEW)
    baked: dict[int, K.BakeResult] = {}
    for size in (2048, 4096):
        row = Row(f"bake 6 views -> {size}^2, 200k faces")
        row.cpu_ms = best_of(lambda: baked.__setitem__(size, K.bake_views(pos, faces, uv, bake_views, size)), args.runs)
        if not args.quick and size == 2048:
            row.reference_ms = once(lambda: K.bake_views(pos, faces, uv, bake_views, size, backend="reference"))
        if gpu:
            torch, sync = gpu
            pt, ft, ut = (torch.from_numpy(a).cuda() for a in (pos, faces, uv))
            gviews = [K.BakeView(torch.from_numpy(v.image).cuda(), v.view_proj, v.weight) for v in bake_views]
            row.gpu_ms = best_of(lambda: K.bake_views(pt, ft, ut, gviews, size), args.runs, sync)
        rows.append(row)
        print(row)
    res = baked[4096]
    row = Row("fill holes 4096^2 (mesh + gutters), 200k faces")
    row.cpu_ms = best_of(lambda: K.fill_holes(res.texture, res.mask, positions=pos, uvs=uv, faces=faces), args.runs)
    if not args.quick:
        row.reference_ms = once(lambda: K.fill_holes(res.texture, res.mask, positions=pos, uvs=uv, faces=faces, backend="reference"))
    if gpu:
        torch, sync = gpu
        tt, mt = torch.from_numpy(res.texture).cuda(), torch.from_numpy(res.mask).cuda()
        pt, ft, ut = (torch.from_numpy(a).cuda() for a in (pos, faces, uv))
        row.gpu_ms = best_of(lambda: K.fill_holes(tt, mt, positions=pt, uvs=ut, faces=ft), args.runs, sync)
    rows.append(row)
    print(row)

    # 4. The texture stage's CPU goal: six views baked and filled into 2048^2.
    row = Row("bake 6 views + fill -> 2048^2, 200k faces (goal < 1.5 s)")

    def bake_and_fill() -> None:
        r = K.bake_views(pos, faces, uv, bake_views, 2048)
        K.fill_holes(r.texture, r.mask, positions=pos, uvs=uv, faces=faces)

    row.cpu_ms = best_of(bake_and_fill, args.runs)
    rows.append(row)
    print(row)
    write_table(rows, Path(args.out), gpu is not None)


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:,.1f}x"


def write_table(rows: list[Row], out: Path, has_gpu: bool) -> None:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    head = "| case | reference ms | CPU ms | GPU ms | ref / CPU | CPU / GPU | notes |\n|---|---:|---:|---:|---:|---:|---|\n"
    body = "".join(
        f"| {r.case} | {fmt(r.reference_ms)} | {fmt(r.cpu_ms)} | {fmt(r.gpu_ms)} | {ratio(r.reference_ms, r.cpu_ms)} "
        f"| {ratio(r.cpu_ms, r.gpu_ms)} | {'; '.join(r.notes)} |\n"
        for r in rows
    )
    import numba

    info = (
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, numba {numba.__version__} with "
        f"{numba.get_num_threads()} threads, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end; "
        f"GPU: {'CUDA' if has_gpu else 'none (no GPU column)'}. {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n"
    )
    table = head + body
    print()
    print(table)
    print(info)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Kernel benchmark (`python benchmarks/kernels.py`)\n\n" + info + "\n" + table)


if __name__ == "__main__":
    main()

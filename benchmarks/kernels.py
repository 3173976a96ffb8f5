"""Benchmark of the kernels: reference (numpy) vs CPU (numba) vs GPU (Triton, when CUDA exists).

    python benchmarks/kernels.py [--quick] [--runs 3] [--out benchmarks/results/kernels.md]

Cases (issue 4): rasterize six 2048^2 views of 50k, 200k and 1M-face meshes; bake six views
into 2048^2 and 4096^2 textures; fill holes at 4096^2; plus the CPU goals: one 2048^2 view of
a 200k-face mesh (< 150 ms) and six views baked and filled into 2048^2 (< 1.5 s).

Times are milliseconds, the best of ``--runs`` after a warm-up (numba and Triton compile once).
The CPU column also gives the process CPU time (both threads) in brackets: on a shared machine
the wall time includes waiting for a core, the CPU time does not. The reference rasterizer
loops over faces in Python; where marked "est." it was timed on one view, a slice of the faces
or a smaller mesh and scaled linearly, as the notes say.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

# The repository root first: run as a script, this file's own folder (and name) would shadow the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kernels as K
from kernels.meshes import sphere_with_faces

VIEW = 2048


@dataclass
class Row:
    case: str
    reference_ms: float | None = None
    cpu_ms: float | None = None
    cpu_time_ms: float | None = None
    gpu_ms: float | None = None
    notes: list[str] = field(default_factory=list)


def best_of(fn: Callable[[], Any], runs: int, sync: Callable[[], None] | None = None) -> tuple[float, float]:
    """Best wall time and best process CPU time, in ms, over ``runs`` calls after one warm-up."""
    fn()
    if sync:
        sync()
    wall = cpu = float("inf")
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        if sync:
            sync()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return wall * 1e3, cpu * 1e3


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


def cuda() -> Any:
    """torch when a CUDA device is usable, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def raster_six(pos: Any, faces: Any, views: list[K.View]) -> None:
    for v in views:
        K.rasterize(pos, faces, v.view_proj, VIEW, VIEW)


def bake_and_fill(pos: Any, faces: Any, uv: Any, views: list[K.BakeView], size: int) -> None:
    r = K.bake_views(pos, faces, uv, views, size)
    K.fill_holes(r.texture, r.mask, positions=pos, uvs=uv, faces=faces, uv_raster=r.uv_raster)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the reference timings")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "kernels.md"))
    args = ap.parse_args()
    torch = cuda()
    sync = torch.cuda.synchronize if torch else None
    if torch is None:
        print("no GPU: the GPU column stays empty (the Triton kernels are tested in the interpreter)")
    rows: list[Row] = []
    views = K.upstream_views()
    meshes = {n: sphere_with_faces(n, 0.5) for n in (50_000, 200_000, 1_000_000)}

    def add(row: Row) -> None:
        rows.append(row)
        print(row, flush=True)

    # 1. Rasterize six 2048^2 views.
    for n_faces, (pos, faces, _) in meshes.items():
        row = Row(f"rasterize 6 x {VIEW}^2, {len(faces) / 1e3:.0f}k faces")
        row.cpu_ms, row.cpu_time_ms = best_of(partial(raster_six, pos, faces, views), args.runs)
        if not args.quick:
            part = faces if n_faces <= 200_000 else faces[: len(faces) // 10]
            scale = 6 * len(faces) / len(part)
            row.reference_ms = scale * once(partial(K.rasterize, pos, part, views[0].view_proj, VIEW, VIEW,
                                                    backend="reference"))
            row.notes.append("ref est.: 1 view x 6" if part is faces else "ref est.: 1 view of 1/10 of the faces x 60")
        if torch:
            pt, ft = torch.from_numpy(pos).cuda(), torch.from_numpy(faces).cuda()
            row.gpu_ms = best_of(partial(raster_six, pt, ft, views), args.runs, sync)[0]
        add(row)
    pos, faces, uv = meshes[200_000]
    row = Row(f"rasterize 1 x {VIEW}^2, 200k faces (goal < 150 ms)")
    row.cpu_ms, row.cpu_time_ms = best_of(partial(K.rasterize, pos, faces, views[0].view_proj, VIEW, VIEW), args.runs)
    add(row)

    # 2. Bake six 2048^2 views of the 200k mesh into 2048^2 and 4096^2.
    uv = uv * np.float32(0.96) + np.float32(0.02)  # a gutter around the chart
    baked_views = render_views(pos, faces, VIEW)
    gpu_args: tuple[Any, ...] = ()
    if torch:
        pt, ft, ut = (torch.from_numpy(a).cuda() for a in (pos, faces, uv))
        gviews = [K.BakeView(torch.from_numpy(v.image).cuda(), v.view_proj, v.weight) for v in baked_views]
        gpu_args = (pt, ft, ut, gviews)
    for size in (2048, 4096):
        row = Row(f"bake 6 views -> {size}^2, 200k faces")
        row.cpu_ms, row.cpu_time_ms = best_of(partial(K.bake_views, pos, faces, uv, baked_views, size), args.runs)
        if torch:
            row.gpu_ms = best_of(partial(K.bake_views, *gpu_args, size), args.runs, sync)[0]
        add(row)
    if not args.quick:
        # The reference bake is dominated by its Python rasterizer: time it on the 50k mesh, with
        # the UV raster plus one view, and scale the per-view part to six views.
        p50, f50, uv50 = meshes[50_000]
        uv50 = uv50 * np.float32(0.96) + np.float32(0.02)
        v50 = render_views(p50, f50, VIEW)
        row = Row("bake 6 views -> 2048^2, 50k faces")
        row.cpu_ms, row.cpu_time_ms = best_of(partial(K.bake_views, p50, f50, uv50, v50, 2048), args.runs)
        t_uv = once(partial(K.rasterize_uv, uv50, f50, 2048, 2048, backend="reference"))
        t_one = once(partial(K.bake_views, p50, f50, uv50, v50[:1], 2048, backend="reference"))
        row.reference_ms = t_uv + 6 * max(t_one - t_uv, 0.0)
        row.notes.append("ref est.: UV raster + 6 x (one-view bake - UV raster)")
        add(row)

    # 3. Fill holes at 4096^2 (the 4096^2 bake of the 200k mesh: mesh propagation, gutters, push-pull).
    res = K.bake_views(pos, faces, uv, baked_views, 4096)
    row = Row("fill holes 4096^2, 200k faces")
    row.cpu_ms, row.cpu_time_ms = best_of(partial(K.fill_holes, res.texture, res.mask, positions=pos, uvs=uv,
                                                  faces=faces), args.runs)
    if not args.quick:
        row.reference_ms = once(partial(K.fill_holes, res.texture, res.mask, positions=pos, uvs=uv, faces=faces,
                                        backend="reference"))
    if torch:
        tt, mt = torch.from_numpy(res.texture).cuda(), torch.from_numpy(res.mask).cuda()
        row.gpu_ms = best_of(partial(K.fill_holes, tt, mt, positions=gpu_args[0], uvs=gpu_args[2],
                                     faces=gpu_args[1]), args.runs, sync)[0]
    add(row)

    # 4. The texture stage's CPU goal.
    row = Row("bake 6 views + fill -> 2048^2, 200k faces (goal < 1.5 s)")
    row.cpu_ms, row.cpu_time_ms = best_of(partial(bake_and_fill, pos, faces, uv, baked_views, 2048), args.runs)
    if torch:
        row.gpu_ms = best_of(partial(bake_and_fill, *gpu_args, 2048), args.runs, sync)[0]
    add(row)
    write_table(rows, Path(args.out), torch is not None)


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:,.1f}x"


def write_table(rows: list[Row], out: Path, has_gpu: bool) -> None:
    import numba

    load = os.getloadavg()
    head = (
        "| case | reference ms | CPU ms (CPU time) | GPU ms | ref / CPU | CPU / GPU | notes |\n"
        "|---|---:|---:|---:|---:|---:|---|\n"
    )
    body = "".join(
        f"| {r.case} | {fmt(r.reference_ms)} | {fmt(r.cpu_ms)} ({fmt(r.cpu_time_ms)}) | {fmt(r.gpu_ms)} "
        f"| {ratio(r.reference_ms, r.cpu_ms)} | {ratio(r.cpu_ms, r.gpu_ms)} | {'; '.join(r.notes)} |\n"
        for r in rows
    )
    info = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. {platform.platform()}, {os.cpu_count()} CPUs, "
        f"numba {numba.__version__} with {numba.get_num_threads()} threads, load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) at the end. "
        f"GPU: {'CUDA, ' + __import__('torch').cuda.get_device_name() if has_gpu else 'none (empty GPU column)'}.\n"
    )
    print()
    print(table := head + body)
    print(info)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Kernel benchmark\n\n`python benchmarks/kernels.py`\n\n" + info + "\n" + table)


if __name__ == "__main__":
    main()

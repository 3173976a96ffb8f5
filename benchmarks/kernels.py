"""Benchmark of the kernels: reference (numpy) vs CPU (numba) vs GPU (Triton, when CUDA exists).

    python benchmarks/kernels.py [--quick] [--runs 3] [--out benchmarks/results/kernels.md]

Cases (issue 4): rasterize six 2048^2 views of 50k, 200k and 1M-face meshes; bake six views
into 2048^2 and 4096^2 textures; fill holes at 4096^2; plus the CPU goals: one 2048^2 view of
a 200k-face mesh (< 150 ms) and six views baked and filled into 2048^2 (< 1.5 s).

Times are milliseconds, the best of ``--runs`` after a warm-up (numba and Triton compile once),
the sides of each case timed interleaved (CPU, reference, GPU, CPU, GPU, ...) so that machine load
hits them alike. Every timed output is checked: the CPU rasterizer against the reference face for
face and depth for depth (in ``--quick`` mode on a 1/50 slice of the faces, untimed), every baked
texel against the colour the views painted at its surface point (``colour_of``), fills keep the
known texels and stay in their range (and match the reference), the GPU against the CPU.
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

from inference_server import kernels as K
from inference_server.kernels.meshes import sphere_with_faces

VIEW = 2048


@dataclass
class Row:
    case: str
    reference_ms: float | None = None
    cpu_ms: float | None = None
    cpu_time_ms: float | None = None
    gpu_ms: float | None = None
    notes: list[str] = field(default_factory=list)


def interleaved(
    sides: dict[str, tuple[Callable[[], Any], int]], sync: Callable[[], None] | None = None
) -> dict[str, tuple[float, float, Any]]:
    """Time the sides in turn (A B A B ...) so that machine load hits them alike.

    ``sides``: name -> (call, runs). A side timed more than once gets one untimed warm-up first
    (numba and Triton compile once); the reference, timed once, gets none. Returns name ->
    (best wall ms, best process CPU ms, the output of its last call) for the checks.
    """
    out: dict[str, Any] = {}
    for name, (fn, runs) in sides.items():
        if runs > 1:
            out[name] = fn()
            if sync:
                sync()
    best = {name: [float("inf"), float("inf")] for name in sides}
    for r in range(max(runs for _, runs in sides.values())):
        for name, (fn, runs) in sides.items():
            if r >= runs:
                continue
            w0, c0 = time.perf_counter(), time.process_time()
            out[name] = fn()
            if sync:
                sync()
            best[name][0] = min(best[name][0], (time.perf_counter() - w0) * 1e3)
            best[name][1] = min(best[name][1], (time.process_time() - c0) * 1e3)
    return {name: (best[name][0], best[name][1], out[name]) for name in sides}


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


def raster_six(pos: Any, faces: Any, views: list[K.View]) -> list[K.Raster]:
    return [K.rasterize(pos, faces, v.view_proj, VIEW, VIEW) for v in views]


def bake_and_fill(pos: Any, faces: Any, uv: Any, views: list[K.BakeView], size: int) -> tuple[K.BakeResult, Any]:
    r = K.bake_views(pos, faces, uv, views, size)
    return r, K.fill_holes(r.texture, r.mask, positions=pos, uvs=uv, faces=faces, uv_raster=r.uv_raster)


# ----------------------------------------------------------------------------- checks: the work is right


def host(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def check_raster_equal(a: K.Raster, b: K.Raster, what: str, max_mismatch: float = 0.0) -> None:
    """Same face per pixel (share of differing pixels at most ``max_mismatch``) and, where both agree, same depth."""
    fa, fb = host(a.face_id), host(b.face_id)
    mismatch = float((fa != fb).mean())
    same = (fa == fb) & (fa >= 0)
    depth_err = float(np.abs(host(a.depth)[same] - host(b.depth)[same]).max()) if same.any() else 0.0
    if mismatch > max_mismatch or depth_err > (0.0 if max_mismatch == 0.0 else 1e-5) or not (fa >= 0).any():
        raise AssertionError(f"{what}: face ids differ on {mismatch:.2e} of the pixels, depth by {depth_err:.2e}")


def check_bake(res: K.BakeResult, pos: np.ndarray, faces: np.ndarray, what: str, min_share: float = 0.5) -> None:
    """Every baked texel holds the colour the views painted at its surface point (colour_of of that point)."""
    mask = host(res.mask)
    truth = colour_of(K.interpolate(res.uv_raster, faces, pos.astype(np.float64)))
    err = np.abs(host(res.texture) - truth)[mask]
    if mask.mean() < min_share or float(err.max()) > 0.01:
        raise AssertionError(f"{what}: {mask.mean():.2f} of the texels baked, largest colour error {err.max():.4f}")


def check_fill(texture: Any, mask: Any, filled: Any, what: str) -> None:
    """Known texels untouched, every texel finite and inside the known values' range (fills average neighbours)."""
    tex, known, out = host(texture), host(mask), host(filled)
    lo, hi = tex[known].min(axis=0), tex[known].max(axis=0)
    if not (np.array_equal(out[known], tex[known]) and np.isfinite(out).all()
            and (out >= lo - 1e-6).all() and (out <= hi + 1e-6).all()):
        raise AssertionError(f"{what}: the fill changed known texels or left holes or out-of-range values")


def check_close(a: Any, b: Any, what: str, atol: float) -> None:
    err = float(np.abs(host(a) - host(b)).max())
    if err > atol:
        raise AssertionError(f"{what}: differs by {err:.2e} (> {atol})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the reference timings (the checks still run)")
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

    # 1. Rasterize six 2048^2 views: CPU, reference and GPU interleaved.
    for n_faces, (pos, faces, _) in meshes.items():
        row = Row(f"rasterize 6 x {VIEW}^2, {len(faces) / 1e3:.0f}k faces")
        # The reference loops over faces in Python: timed on one view (and a tenth of the faces above
        # 200k) and scaled; in --quick mode it only checks a 1/50 slice of the faces, untimed.
        part = faces if n_faces <= 200_000 else faces[: len(faces) // 10]
        if args.quick:
            part = faces[: len(faces) // 50]
        sides: dict[str, tuple[Callable[[], Any], int]] = {"cpu": (partial(raster_six, pos, faces, views), args.runs)}
        if not args.quick:
            sides["ref"] = (partial(K.rasterize, pos, part, views[0].view_proj, VIEW, VIEW, backend="reference"), 1)
        if torch:
            pt, ft = torch.from_numpy(pos).cuda(), torch.from_numpy(faces).cuda()
            sides["gpu"] = (partial(raster_six, pt, ft, views), args.runs)
        t = interleaved(sides, sync)
        row.cpu_ms, row.cpu_time_ms, cpu_out = t["cpu"]
        ref = t["ref"][2] if "ref" in t else K.rasterize(pos, part, views[0].view_proj, VIEW, VIEW, backend="reference")
        cpu_part = cpu_out[0] if part is faces else K.rasterize(pos, part, views[0].view_proj, VIEW, VIEW)
        check_raster_equal(cpu_part, ref, f"{row.case}: CPU vs reference")
        if "ref" in t:
            row.reference_ms = 6 * len(faces) / len(part) * t["ref"][0]
            row.notes.append("ref est.: 1 view x 6" if part is faces else "ref est.: 1 view of 1/10 of the faces x 60")
        if torch:
            row.gpu_ms = t["gpu"][0]
            for a, b in zip(t["gpu"][2], cpu_out, strict=True):
                check_raster_equal(a, b, f"{row.case}: GPU vs CPU", max_mismatch=1e-4)
        add(row)
    pos, faces, uv = meshes[200_000]
    row = Row(f"rasterize 1 x {VIEW}^2, 200k faces (goal < 150 ms)")
    one = interleaved({"cpu": (partial(K.rasterize, pos, faces, views[0].view_proj, VIEW, VIEW), args.runs)})
    row.cpu_ms, row.cpu_time_ms, _ = one["cpu"]
    check_raster_equal(one["cpu"][2], raster_six(pos, faces, views[:1])[0], f"{row.case}: same as in the six views")
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
        sides = {"cpu": (partial(K.bake_views, pos, faces, uv, baked_views, size), args.runs)}
        if torch:
            sides["gpu"] = (partial(K.bake_views, *gpu_args, size), args.runs)
        t = interleaved(sides, sync)
        row.cpu_ms, row.cpu_time_ms, cpu_res = t["cpu"]
        check_bake(cpu_res, pos, faces, f"{row.case}: CPU")
        if torch:
            row.gpu_ms = t["gpu"][0]
            check_close(t["gpu"][2].texture, cpu_res.texture, f"{row.case}: GPU vs CPU", 1e-3)
        add(row)
    if not args.quick:
        # The reference bake is dominated by its Python rasterizer: time it on the 50k mesh, with
        # the UV raster plus one view, and scale the per-view part to six views.
        p50, f50, uv50 = meshes[50_000]
        uv50 = uv50 * np.float32(0.96) + np.float32(0.02)
        v50 = render_views(p50, f50, VIEW)
        row = Row("bake 6 views -> 2048^2, 50k faces")
        t = interleaved({
            "cpu": (partial(K.bake_views, p50, f50, uv50, v50, 2048), args.runs),
            "ref_uv": (partial(K.rasterize_uv, uv50, f50, 2048, 2048, backend="reference"), 1),
            "ref_one": (partial(K.bake_views, p50, f50, uv50, v50[:1], 2048, backend="reference"), 1),
        })
        row.cpu_ms, row.cpu_time_ms, cpu_res = t["cpu"]
        check_bake(cpu_res, p50, f50, f"{row.case}: CPU")
        check_bake(t["ref_one"][2], p50, f50, f"{row.case}: reference, one view", min_share=0.1)
        row.reference_ms = t["ref_uv"][0] + 6 * max(t["ref_one"][0] - t["ref_uv"][0], 0.0)
        row.notes.append("ref est.: UV raster + 6 x (one-view bake - UV raster)")
        add(row)

    # 3. Fill holes at 4096^2 (the 4096^2 bake of the 200k mesh: mesh propagation, gutters, push-pull).
    res = K.bake_views(pos, faces, uv, baked_views, 4096)
    row = Row("fill holes 4096^2, 200k faces")
    sides = {"cpu": (partial(K.fill_holes, res.texture, res.mask, positions=pos, uvs=uv, faces=faces), args.runs)}
    if not args.quick:
        sides["ref"] = (partial(K.fill_holes, res.texture, res.mask, positions=pos, uvs=uv, faces=faces,
                                backend="reference"), 1)
    if torch:
        tt, mt = torch.from_numpy(res.texture).cuda(), torch.from_numpy(res.mask).cuda()
        sides["gpu"] = (partial(K.fill_holes, tt, mt, positions=gpu_args[0], uvs=gpu_args[2], faces=gpu_args[1]),
                        args.runs)
    t = interleaved(sides, sync)
    row.cpu_ms, row.cpu_time_ms, cpu_fill = t["cpu"]
    check_fill(res.texture, res.mask, cpu_fill, f"{row.case}: CPU")
    if "ref" in t:
        row.reference_ms = t["ref"][0]
        check_close(cpu_fill, t["ref"][2], f"{row.case}: CPU vs reference", 1e-5)
    if torch:
        row.gpu_ms = t["gpu"][0]
        check_close(t["gpu"][2], cpu_fill, f"{row.case}: GPU vs CPU", 1e-3)
    add(row)

    # 4. The texture stage's CPU goal.
    row = Row("bake 6 views + fill -> 2048^2, 200k faces (goal < 1.5 s)")
    sides = {"cpu": (partial(bake_and_fill, pos, faces, uv, baked_views, 2048), args.runs)}
    if torch:
        sides["gpu"] = (partial(bake_and_fill, *gpu_args, 2048), args.runs)
    t = interleaved(sides, sync)
    row.cpu_ms, row.cpu_time_ms, (cpu_res, cpu_fill) = t["cpu"]
    check_bake(cpu_res, pos, faces, f"{row.case}: CPU bake")
    check_fill(cpu_res.texture, cpu_res.mask, cpu_fill, f"{row.case}: CPU fill")
    if torch:
        row.gpu_ms = t["gpu"][0]
        check_close(t["gpu"][2][1], cpu_fill, f"{row.case}: GPU vs CPU", 1e-3)
    add(row)
    write_table(rows, Path(args.out), torch is not None, args.quick)


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:,.1f}x"


def write_table(rows: list[Row], out: Path, has_gpu: bool, quick: bool) -> None:
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
        f"GPU: {'CUDA, ' + __import__('torch').cuda.get_device_name() if has_gpu else 'none (empty GPU column)'}. "
        "Sides timed interleaved (CPU, reference, GPU, CPU, ...); every output checked (CPU against the reference "
        "face for face, baked colours against the painted surface, fills keep known texels; GPU against CPU).\n"
    )
    print()
    print(table := head + body)
    print(info)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/kernels.py" + (" --quick" if quick else "")
    out.write_text(f"# Kernel benchmark\n\n`{command}`\n\n" + info + "\n" + table)


if __name__ == "__main__":
    main()

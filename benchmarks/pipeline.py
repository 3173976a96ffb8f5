"""Benchmark: the weight-free pipeline per stage, and the UV atlas against xatlas defaults.

    python benchmarks/pipeline.py                  # everything (about 6 minutes on 2 cores)
    python benchmarks/pipeline.py --sizes 50000    # atlas rows only for these face counts
    python benchmarks/pipeline.py --skip-pipeline --xatlas-timeout 60

Part 1 runs ``InflatePipeline`` on a 1024^2 image (examples/apple.png, or a drawn disk
when it is missing) at default settings and prints ``Asset.timings`` plus GLB export.
Part 2 unwraps smoothly bumped spheres of 50k, 200k and 1M faces with our chunked
atlas and with ``xatlas.parametrize`` at its defaults; xatlas runs in a child process
so it can be stopped at ``--xatlas-timeout`` seconds (``--xatlas-timeout-big`` above
400k faces), printed as "> N". ``benchmarks/atlas.py`` compares the atlases themselves
(coverage, texel density, stretch of both, on the pipeline's own meshes too).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference_server.assets import MeshData  # noqa: E402

_XATLAS_CHILD = """
import sys, time, numpy as np, xatlas
data = np.load(sys.argv[1])
t = time.perf_counter()
xatlas.parametrize(data["positions"], data["faces"])
print(time.perf_counter() - t)
"""


def bumpy_sphere(faces_target: int, seed: int = 0) -> MeshData:
    """A smooth, closed, irregularly triangulated blob (like the inflate backend's output)."""
    import fast_simplification
    import trimesh

    sub = 5
    while 20 * 4**sub < faces_target * 1.2:
        sub += 1
    sphere = trimesh.creation.icosphere(subdivisions=sub)
    v = sphere.vertices
    rng = np.random.default_rng(seed)
    bump = sum(0.05 * np.cos(v @ (rng.normal(size=3) * 2.5) + rng.uniform(0, 6.28)) for _ in range(8))
    v = v * (1.0 + bump)[:, None]
    f = sphere.faces
    if len(f) > faces_target:
        v, f = fast_simplification.simplify(v.astype(np.float32), f.astype(np.int32),
                                            target_reduction=1.0 - faces_target / len(f))
    return MeshData(np.asarray(v, np.float32), np.asarray(f, np.uint32))


def xatlas_defaults_seconds(mesh: MeshData, timeout: float) -> float | None:
    """Seconds ``xatlas.parametrize`` takes with defaults, or None past ``timeout``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mesh.npz"
        np.savez(path, positions=mesh.positions, faces=mesh.faces)
        try:
            out = subprocess.run([sys.executable, "-c", _XATLAS_CHILD, str(path)], capture_output=True,
                                 text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-1000:])
        return float(out.stdout.strip().splitlines()[-1])


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def bench_pipeline() -> None:
    print("== Weight-free pipeline, 1024^2 image, default settings ==")
    try:
        from inference_server.pipeline.inflate import InflatePipeline
    except ModuleNotFoundError as exc:
        print(f"skipped: inference_server.pipeline.inflate is not available ({exc})")
        return
    from blender_addon.protocol.settings import JobSettings
    from inference_server.export import asset_to_glb
    from inference_server.pipeline.base import JobContext, JobRequest
    from PIL import Image

    example = REPO / "examples" / "apple.png"
    if example.is_file():
        image = np.asarray(Image.open(example).convert("RGBA").resize((1024, 1024), Image.Resampling.LANCZOS))
        name = example.name
    else:
        yy, xx = np.mgrid[0:1024, 0:1024]
        inside = (xx - 512) ** 2 + (yy - 512) ** 2 < 380**2
        image = np.zeros((1024, 1024, 4), np.uint8)
        image[inside] = (200, 60, 40, 255)
        name = "disk (drawn)"
    request = JobRequest(images=[image], settings=JobSettings(), image_names=[name])
    start = time.perf_counter()
    try:
        asset = InflatePipeline().run(request, JobContext())
    except Exception as exc:  # the benchmark reports, it does not debug other stages
        print(f"skipped: the pipeline failed: {type(exc).__name__}: {exc}")
        return
    total = time.perf_counter() - start
    t = time.perf_counter()
    glb = asset_to_glb(asset)
    export_s = time.perf_counter() - t
    rows = [[stage, f"{sec:.2f}"] for stage, sec in asset.timings.items()]
    rows.append(["export (GLB, not in run)", f"{export_s:.2f}"])
    rows.append(["total run()", f"{total:.2f}"])
    print(f"input {name}; {asset.mesh.face_count} faces, {asset.mesh.vertex_count} vertices, "
          f"GLB {len(glb) / 1e6:.1f} MB")
    print(table(["stage", "seconds"], rows))


def bench_atlas(sizes: list[int], timeout: float, timeout_big: float, texture_size: int) -> None:
    from inference_server.uv import unwrap_with_info
    from inference_server.uv.quality import measure_atlas

    print(f"\n== UV atlas at {texture_size}^2: ours (chunked xatlas) vs xatlas.parametrize defaults ==")
    rows = []
    for n in sizes:
        mesh = bumpy_sphere(n)
        ours = unwrap_with_info(mesh, texture_size=texture_size)
        q = measure_atlas(ours.mesh, texture_size, max_gap_checked=ours.padding_px)
        # Above 400k faces xatlas defaults run for tens of minutes (users report 30-60):
        # a shorter cap is enough to show the ratio's lower bound.
        cap = timeout if n <= 400_000 else timeout_big
        ref = xatlas_defaults_seconds(mesh, cap)
        ref_s = f"> {cap:.0f}" if ref is None else f"{ref:.1f}"
        ratio = f"> {cap / ours.seconds:.0f}x" if ref is None else f"{ref / ours.seconds:.0f}x"
        rows.append([
            f"{mesh.face_count:,}", f"{ours.seconds:.2f}", ref_s, ratio, str(ours.chart_count),
            str(q.overlap_texels), str(q.flipped_faces),
            f"{q.area_distortion_mean:.3f}/{q.area_distortion_p95:.3f}",
            f"{q.angle_distortion_mean:.3f}/{q.angle_distortion_p95:.3f}",
            str(q.min_gap_px) if q.min_gap_px <= ours.padding_px else f">{ours.padding_px}", f"{q.coverage:.2f}",
        ])
    print(table(["faces", "ours s", "xatlas s", "speed-up", "charts", "overlap px", "flips",
                 "area dist mean/p95", "angle dist mean/p95", "gap px", "coverage"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[50_000, 200_000, 1_000_000])
    parser.add_argument("--xatlas-timeout", type=float, default=400.0, help="cap for xatlas up to 400k faces")
    parser.add_argument("--xatlas-timeout-big", type=float, default=120.0, help="cap above 400k faces")
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    if not args.skip_pipeline:
        bench_pipeline()
    if args.sizes:
        bench_atlas(args.sizes, args.xatlas_timeout, args.xatlas_timeout_big, args.texture_size)


if __name__ == "__main__":
    main()

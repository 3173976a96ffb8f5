"""Benchmark: our UV atlas (chunked xatlas charts + pack.py) against xatlas.parametrize defaults.

    python benchmarks/atlas.py                        # bumpy spheres and the apple at 50k and 200k faces,
                                                      # the bumpy sphere at 1M (xatlas stopped at 120 s)
    python benchmarks/atlas.py --sizes 50000 --meshes bumpy --big-sizes
    python benchmarks/atlas.py --baseline HEAD        # also the atlas of a git revision, side by side

Meshes: ``bumpy`` is a smooth bumpy sphere (irregularly simplified, like the weight-free
backend's output); ``apple`` is the weight-free pipeline's own geometry for examples/apple.png
(geometry-only run at that face budget), i.e. what the atlas really gets in ``step1x3d generate``.

Every atlas is measured the same way, by ``quality.measure_atlas`` at the texture size:
coverage (share of texel centres inside a chart), overlap, flips, stretch and the gap
between charts, and checked: the unwrapped mesh has the input's triangles in the input's
order (positions unchanged), and ours must be clean (no overlapping charts, no flipped
faces, every UV in [0, 1]) or the script stops. Ours runs in-process (numba compiled
beforehand); xatlas with defaults runs in a child process that is stopped at
``--xatlas-timeout`` seconds (``--xatlas-timeout-big`` above 400k faces, where it runs for
tens of minutes) and sends its UVs back. The timings are interleaved: ours, xatlas, ours,
xatlas, ..., ours (``--rounds`` xatlas runs), and each xatlas run is divided by the mean of
the two runs of ours around it; the speed-up is the median of those ratios. When xatlas is
stopped, the speed-up is a lower bound, printed "> N": more than N times faster, xatlas did
not finish within the cap (N = cap / the slower of the two runs of ours around it).
``--baseline REV`` loads ``inference_server/uv/atlas.py`` as it was at git revision REV
(e.g. the commit before a change) and runs it interleaved too (after each run of ours), so
before/after figures come from one run on one machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference_server.assets import MeshData

_XATLAS_CHILD = """
import sys, time, numpy as np, xatlas
data = np.load(sys.argv[1])
t = time.perf_counter()
vmap, faces, uvs = xatlas.parametrize(data["positions"], data["faces"])
seconds = time.perf_counter() - t
np.savez(sys.argv[2], vmap=vmap, faces=faces, uvs=uvs)
print(seconds)
"""


def apple_mesh(faces: int) -> MeshData:
    """The weight-free pipeline's geometry for examples/apple.png at ``faces`` faces."""
    from PIL import Image

    from blender_addon.protocol.settings import JobSettings
    from inference_server.pipeline.base import JobContext, JobRequest
    from inference_server.pipeline.inflate import InflatePipeline

    image = Image.open(REPO / "examples" / "apple.png").convert("RGBA")
    pixels = np.asarray(image.resize((1024, 1024), Image.Resampling.LANCZOS))
    request = JobRequest(images=[pixels], settings=JobSettings(mode="geometry", max_faces=faces),
                         image_names=["apple.png"])
    return InflatePipeline().run(request, JobContext()).mesh


def bumpy_mesh(faces_target: int, seed: int = 0) -> MeshData:
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


MESHES: dict[str, Callable[[int], MeshData]] = {"bumpy": bumpy_mesh, "apple": apple_mesh}


def xatlas_defaults(mesh: MeshData, timeout: float) -> tuple[float, MeshData] | None:
    """(seconds, unwrapped mesh) from ``xatlas.parametrize`` with defaults, or None past ``timeout``."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "mesh.npz", Path(tmp) / "out.npz"
        np.savez(src, positions=mesh.positions, faces=mesh.faces)
        try:
            proc = subprocess.run([sys.executable, "-c", _XATLAS_CHILD, str(src), str(out)], check=False,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-1000:])
        data = np.load(out)
        unwrapped = MeshData(np.asarray(mesh.positions)[data["vmap"]], data["faces"].astype(np.uint32),
                             uvs=data["uvs"].astype(np.float32))
        return float(proc.stdout.strip().splitlines()[-1]), unwrapped


def load_baseline(rev: str) -> types.ModuleType:
    """``inference_server/uv/atlas.py`` at git revision ``rev``, importable next to the current package."""
    source = subprocess.run(["git", "show", f"{rev}:inference_server/uv/atlas.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    name = "inference_server.uv._baseline_atlas"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "inference_server.uv"
    sys.modules[name] = module
    exec(compile(source, f"{rev}:inference_server/uv/atlas.py", "exec"), module.__dict__)  # noqa: S102
    return module


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def same_triangles(unwrapped: MeshData, mesh: MeshData, side: str) -> None:
    """The atlas only splits vertices at seams: the input's triangles, in the input's order."""
    got = np.asarray(unwrapped.positions, np.float32)[np.asarray(unwrapped.faces, np.int64)]
    want = np.asarray(mesh.positions, np.float32)[np.asarray(mesh.faces, np.int64)]
    if got.shape != want.shape or not np.array_equal(got, want):
        raise AssertionError(f"{side}: the unwrapped mesh does not have the input's triangles")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def describe(quality: Any) -> dict[str, str]:
    return {
        "cov": f"{quality.coverage:.3f}",
        "charts": str(quality.charts),
        "gap": str(quality.min_gap_px) if quality.min_gap_px <= 16 else ">16",
        "stretch": f"{quality.area_distortion_p95:.2f}/{quality.angle_distortion_p95:.2f}",
        "density": f"{quality.density_spread:.3f}",
        "clean": "yes" if is_clean(quality) else f"overlap {quality.overlap_texels}, flips {quality.flipped_faces}",
    }


def is_clean(quality: Any) -> bool:
    return bool(quality.overlap_texels == 0 and quality.flipped_faces == 0 and quality.uv_in_range)


def ratio_text(ref_times: list[float | None], ours_times: list[float], cap: float) -> str:
    """Median over the xatlas runs of xatlas / (mean of the runs of ours around it); "> N" when stopped."""
    exact, bounds = [], []
    for i, ref in enumerate(ref_times):
        around = ours_times[i : i + 2]
        if ref is None:
            bounds.append(cap / max(around))
        else:
            exact.append(ref / (sum(around) / len(around)))
    if bounds:
        return f"> {min(bounds):.0f}x"
    return f"{statistics.median(exact):.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[50_000, 200_000])
    parser.add_argument("--big-sizes", type=int, nargs="*", default=[1_000_000],
                        help="face counts run on the bumpy sphere only, xatlas capped at --xatlas-timeout-big")
    parser.add_argument("--meshes", nargs="*", default=list(MESHES), choices=list(MESHES))
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=1, help="xatlas runs per mesh, each between two runs of ours")
    parser.add_argument("--xatlas-timeout", type=float, default=400.0, help="cap for xatlas up to 400k faces (s)")
    parser.add_argument("--xatlas-timeout-big", type=float, default=120.0, help="cap for xatlas above 400k faces (s)")
    parser.add_argument("--baseline", metavar="REV", help="also run inference_server/uv/atlas.py from this git revision")
    args = parser.parse_args()

    from inference_server.uv import default_padding, unwrap_with_info
    from inference_server.uv.quality import measure_atlas

    size = args.texture_size
    baseline = load_baseline(args.baseline) if args.baseline else None
    warm = bumpy_mesh(5_000)
    unwrap_with_info(warm, texture_size=256)  # compile the packer's numba code before timing
    if baseline is not None:
        baseline.unwrap_with_info(warm, texture_size=256)

    print(f"== UV atlas at {size}^2: ours (chunked xatlas charts + pack.py) vs xatlas.parametrize defaults ==")
    headers = ["mesh", "faces", "ours s", "xatlas s", "speed-up", "ours cov", "xatlas cov", "ours cov 4px", "ours charts",
               "xatlas charts", "ours gap", "xatlas gap", "ours stretch", "xatlas stretch", "ours density", "xatlas density", "ours clean",
               "xatlas clean"]
    if baseline is not None:
        headers[5:5] = ["base s", "base speed-up", "base cov"]
    cases = [(kind, n) for kind in args.meshes for n in args.sizes]
    cases += [("bumpy", n) for n in args.big_sizes]
    rows = []
    for kind, faces in cases:
        mesh = MESHES[kind](faces)
        cap = args.xatlas_timeout if faces <= 400_000 else args.xatlas_timeout_big
        ours_times: list[float] = []
        base_times: list[float] = []
        ref_times: list[float | None] = []
        ours = base = ref_mesh = None
        for step in range(args.rounds + 1):  # ours [base], then xatlas, ..., ending with ours [base]
            t, out = timed(lambda m=mesh: unwrap_with_info(m, texture_size=size))
            ours_times.append(t)
            if ours is None:
                ours = out
            elif not np.array_equal(out.mesh.uvs, ours.mesh.uvs):
                raise AssertionError(f"ours: {kind} {faces}: two runs gave different atlases")
            if baseline is not None:
                t, base = timed(lambda m=mesh: baseline.unwrap_with_info(m, texture_size=size))
                base_times.append(t)
            if step < args.rounds:
                ref = xatlas_defaults(mesh, cap)
                ref_times.append(None if ref is None else ref[0])
                if ref is not None:
                    ref_mesh = ref[1]
        assert ours is not None
        same_triangles(ours.mesh, mesh, "ours")
        quality = measure_atlas(ours.mesh, size)
        if not is_clean(quality):
            raise AssertionError(f"ours: {kind} {faces}: the atlas is not clean: {describe(quality)['clean']}, "
                                 f"uvs in [0, 1]: {quality.uv_in_range}")
        q = describe(quality)
        ours_s = statistics.median(ours_times)
        done = [t for t in ref_times if t is not None]
        ratio = ratio_text(ref_times, ours_times, cap)
        if ref_mesh is None or len(done) < len(ref_times):
            ref_s = f"> {cap:.0f}" if not done else f"{statistics.median(done):.1f}, > {cap:.0f}"
        else:
            ref_s = f"{statistics.median(done):.1f}"
        if ref_mesh is None:
            r = dict.fromkeys(q, "-")
        else:
            same_triangles(ref_mesh, mesh, "xatlas")
            r = describe(measure_atlas(ref_mesh, size))
        narrow = measure_atlas(unwrap_with_info(mesh, texture_size=size, padding_px=4).mesh, size).coverage
        row = [kind, f"{mesh.face_count:,}", f"{ours_s:.2f}", ref_s, ratio, q["cov"], r["cov"], f"{narrow:.3f}",
               q["charts"], r["charts"], q["gap"], r["gap"], q["stretch"], r["stretch"], q["density"], r["density"],
               q["clean"], r["clean"]]
        if baseline is not None:
            assert base is not None
            same_triangles(base.mesh, mesh, "base")
            bq = describe(measure_atlas(base.mesh, size))
            base_s = statistics.median(base_times)
            base_ratio = ratio_text(ref_times, base_times, cap)
            row[5:5] = [f"{base_s:.2f}", base_ratio, bq["cov"]]
        rows.append(row)
        print(f"  done: {kind} {mesh.face_count:,} faces (ours {', '.join(f'{t:.2f}' for t in ours_times)} s; "
              f"xatlas {', '.join('stopped' if t is None else f'{t:.1f}' for t in ref_times)})",
              file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f} (1 / 5 / 15 min) at the end; {args.rounds} xatlas run(s) per mesh, interleaved with ours")
    print(table(headers, rows))
    print("ours s: median of the runs of ours; speed-up: median of xatlas / (mean of the two runs of ours around it), "
          "'> N': xatlas did not finish within the cap (xatlas s '> cap'), so ours is more than N times faster; "
          "cov: share of texel centres covered by a chart (ours cov 4px: ours with a 4-texel gap instead of the "
          f"default {default_padding(size)}); gap: smallest distance between two charts in texels "
          "(Chebyshev, texel centres); stretch: p95 of area / angle distortion; density: largest / smallest texel "
          "density among charts of >= 0.1% of the surface; clean: no overlap, no flips, uvs in [0, 1]; every "
          "atlas keeps the input's triangles (checked)")


if __name__ == "__main__":
    main()

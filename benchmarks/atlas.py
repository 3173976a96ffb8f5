"""Benchmark: our UV atlas (chunked xatlas charts + pack.py) against xatlas.parametrize defaults.

    python benchmarks/atlas.py                        # bumpy spheres and the apple, 50k and 200k faces
    python benchmarks/atlas.py --sizes 50000 --meshes bumpy
    python benchmarks/atlas.py --baseline HEAD        # also the atlas of a git revision, side by side

Meshes: ``bumpy`` is benchmarks/pipeline.py's smooth bumpy sphere (irregularly simplified);
``apple`` is the weight-free pipeline's own geometry for examples/apple.png (geometry-only
run at that face budget), i.e. what the atlas really gets in ``step1x3d generate``.

Every atlas is measured the same way, by ``quality.measure_atlas`` at the texture size:
coverage (share of texel centres inside a chart), overlap, flips, stretch and the gap
between charts. Ours runs in-process (numba compiled beforehand, best of ``--repeat`` runs);
xatlas with defaults runs once in a child process that can be stopped at ``--xatlas-timeout``
seconds and sends its UVs back. ``--baseline REV`` loads ``inference_server/uv/atlas.py``
as it was at git revision REV (e.g. the commit before a change) and runs it side by side
too, so before/after figures come from one run on one machine.
"""

from __future__ import annotations

import argparse
import importlib.util
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
sys.path.append(str(REPO / "benchmarks"))  # after the repo: benchmarks/kernels.py must not shadow kernels/

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


def bumpy_mesh(faces: int) -> MeshData:
    from pipeline import bumpy_sphere

    return bumpy_sphere(faces)


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


def timed_best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def describe(quality: Any) -> dict[str, str]:
    return {
        "cov": f"{quality.coverage:.3f}",
        "charts": str(quality.charts),
        "gap": str(quality.min_gap_px) if quality.min_gap_px <= 16 else ">16",
        "stretch": f"{quality.area_distortion_p95:.2f}/{quality.angle_distortion_p95:.2f}",
        "density": f"{quality.density_spread:.3f}",
        "clean": "yes" if quality.overlap_texels == 0 and quality.flipped_faces == 0 and quality.uv_in_range else
                 f"overlap {quality.overlap_texels}, flips {quality.flipped_faces}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[50_000, 200_000])
    parser.add_argument("--meshes", nargs="*", default=list(MESHES), choices=list(MESHES))
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=2, help="runs of ours (and the baseline); the best counts")
    parser.add_argument("--xatlas-timeout", type=float, default=400.0)
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
    rows = []
    for kind in args.meshes:
        for faces in args.sizes:
            mesh = MESHES[kind](faces)
            ours_s, ours = timed_best(lambda m=mesh: unwrap_with_info(m, texture_size=size), args.repeat)
            q = describe(measure_atlas(ours.mesh, size))
            ref = xatlas_defaults(mesh, args.xatlas_timeout)
            if ref is None:
                ref_s, ratio = f"> {args.xatlas_timeout:.0f}", f"> {args.xatlas_timeout / ours_s:.0f}x"
                r = dict.fromkeys(q, "-")
            else:
                ref_s, ratio = f"{ref[0]:.1f}", f"{ref[0] / ours_s:.1f}x"
                r = describe(measure_atlas(ref[1], size))
            narrow = measure_atlas(unwrap_with_info(mesh, texture_size=size, padding_px=4).mesh, size).coverage
            row = [kind, f"{mesh.face_count:,}", f"{ours_s:.2f}", ref_s, ratio, q["cov"], r["cov"], f"{narrow:.3f}", q["charts"],
                   r["charts"], q["gap"], r["gap"], q["stretch"], r["stretch"], q["density"], r["density"], q["clean"],
                   r["clean"]]
            if baseline is not None:
                base_s, base = timed_best(lambda m=mesh: baseline.unwrap_with_info(m, texture_size=size), args.repeat)
                bq = describe(measure_atlas(base.mesh, size))
                base_ratio = "-" if ref is None else f"{ref[0] / base_s:.1f}x"
                row[5:5] = [f"{base_s:.2f}", base_ratio, bq["cov"]]
            rows.append(row)
            print(f"  done: {kind} {mesh.face_count:,} faces", file=sys.stderr, flush=True)
    print(table(headers, rows))
    print("cov: share of texel centres covered by a chart (ours cov 4px: ours with a 4-texel gap instead of the "
          f"default {default_padding(size)}); gap: smallest distance between two charts in texels "
          "(Chebyshev, texel centres); stretch: p95 of area / angle distortion; density: largest / smallest texel "
          "density among charts of >= 0.1% of the surface; clean: no overlap, no flips, uvs in [0, 1]")


if __name__ == "__main__":
    main()

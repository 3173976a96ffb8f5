"""Benchmark: the command a user types, end to end, cold and warm, with its stage split.

    python benchmarks/pipeline.py                        # 2 rounds of (cold, warm): about 4-8 minutes on 2 cores
    python benchmarks/pipeline.py --rounds 1 --warm 2    # one cold run, then two warm ones
    python benchmarks/pipeline.py -- --texture-size 1024 # extra options for `step1x3d generate`

Each run is ``step1x3d generate examples/apple.png -o OUT.glb`` (default settings, in-process
weight-free backend) as a subprocess, timed from start to exit: interpreter start, imports, image
decode, every stage, GLB export and writing the file, as the user waits for it.

- cold: a fresh, empty kernel cache (``STEP1X3D_CACHE_DIR`` and ``NUMBA_CACHE_DIR`` pointed at a
  new temporary folder), so the CPU kernels compile in that run, as on a first install;
- warm: the next run with the same folder, so the compiled kernels are loaded from it.

Rounds interleave the two (cold, warm, cold, warm, ...) with a new cache folder per round, so a
change in machine load hits both alike. The stage split is read back from the GLB each run wrote
(``extras.stage_seconds``, the seconds each pipeline stage took); "outside the stages" is the
wall time minus the top-level stages: start-up, imports, image decode, export and the write.
Every output is checked: the CLI exits 0, and the GLB passes the Khronos glTF validator
(tests/gltf_validator.py, when node is available) or else loads in trimesh, with one textured
mesh of at most ``max_faces`` faces and a UV in [0, 1] for every vertex.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from blender_addon.protocol.provenance import STAGE_SECONDS as STAGE_SECONDS_KEY  # noqa: E402


def cli_command() -> list[str]:
    """``step1x3d`` from this interpreter's environment, else the module form (same code)."""
    script = Path(sys.executable).parent / "step1x3d"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "inference_server.cli"]


def gltf_json(data: bytes) -> dict[str, Any]:
    magic, _, total = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or total != len(data):
        raise AssertionError("the output is not a complete GLB")
    (length,) = struct.unpack_from("<I", data, 12)
    return dict(json.loads(data[20 : 20 + length]))


def check_glb(path: Path, max_faces: int) -> tuple[str, int]:
    """Validate the GLB the CLI wrote; returns (how it was checked, face count)."""
    import numpy as np
    import trimesh

    data = path.read_bytes()
    gltf = gltf_json(data)
    how = "trimesh"
    if shutil.which("node"):
        sys.path.insert(0, str(REPO / "tests"))
        from gltf_validator import ValidatorUnavailable, validate_glb

        try:
            report = validate_glb(data)
        except ValidatorUnavailable as exc:
            print(f"  (glTF validator unavailable: {exc}; checking with trimesh only)", file=sys.stderr)
        else:
            if report["errors"]:
                raise AssertionError(f"{path.name} fails the glTF validator: {report['messages'][:5]}")
            how = "glTF validator + trimesh"
    scene: Any = trimesh.load(str(path), force="scene", process=False)
    (geom,) = scene.geometry.values()
    faces = len(geom.faces)
    if not 0 < faces <= max_faces:
        raise AssertionError(f"{path.name}: {faces} faces, expected 1..{max_faces}")
    uv = getattr(geom.visual, "uv", None)
    if uv is None or len(uv) != len(geom.vertices) or not ((uv >= 0) & (uv <= 1)).all():
        raise AssertionError(f"{path.name}: not every vertex has a UV in [0, 1]")
    if geom.visual.material.baseColorTexture is None or len(gltf.get("images", [])) < 2:
        raise AssertionError(f"{path.name}: no textured PBR material")
    if not np.isfinite(geom.vertices).all():
        raise AssertionError(f"{path.name}: non-finite positions")
    return how, faces


def run_cli(image: Path, out: Path, cache: Path, extra: list[str]) -> float:
    env = dict(os.environ, STEP1X3D_CACHE_DIR=str(cache), NUMBA_CACHE_DIR=str(cache / "numba"))
    start = time.perf_counter()
    proc = subprocess.run([*cli_command(), "generate", str(image), "-o", str(out), *extra], cwd=REPO, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"step1x3d generate failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def stage_seconds(path: Path) -> dict[str, float]:
    stages = gltf_json(path.read_bytes())["asset"].get("extras", {}).get(STAGE_SECONDS_KEY)
    if not isinstance(stages, dict) or not stages:
        raise AssertionError(f"{path.name} records no {STAGE_SECONDS_KEY} in its provenance")
    return {str(k): float(v) for k, v in stages.items()}


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=REPO / "examples" / "apple.png")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (cold run, warm runs), each with a new cache")
    parser.add_argument("--warm", type=int, default=1, help="warm runs per round, after its cold run")
    parser.add_argument("extra", nargs="*", help="options passed on to `step1x3d generate` (after --)")
    args = parser.parse_args()
    from blender_addon.protocol.settings import JobSettings

    max_faces = JobSettings().max_faces
    if "--max-faces" in args.extra:
        max_faces = int(args.extra[args.extra.index("--max-faces") + 1])

    runs: list[tuple[str, float, dict[str, float]]] = []
    checked = ""
    with tempfile.TemporaryDirectory(prefix="step1x3d-bench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            cache = Path(tmp) / f"cache{round_}"  # new and empty: this round's first run is cold
            for i in range(1 + args.warm):
                kind = "cold" if i == 0 else "warm"
                out = Path(tmp) / f"{kind}{round_}_{i}.glb"
                seconds = run_cli(args.image, out, cache, args.extra)
                checked, faces = check_glb(out, max_faces)
                runs.append((f"{kind} {round_}" + (f".{i}" if args.warm > 1 and i else ""), seconds, stage_seconds(out)))
                print(f"  {runs[-1][0]}: {seconds:.1f} s, {faces:,} faces, checked ({checked})", file=sys.stderr,
                      flush=True)

    load = os.getloadavg()
    print(f"`step1x3d generate {args.image.relative_to(REPO) if args.image.is_relative_to(REPO) else args.image} "
          f"-o OUT.glb {' '.join(args.extra)}`".replace("  ", " ").replace(" `", "`"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) at the end")
    print(f"every output checked: exit 0, {checked}, one textured mesh, UVs in [0, 1]")
    names = [name for name, _, _ in runs]
    stage_names = list(dict.fromkeys(k for _, _, st in runs for k in st if k not in ("total", "decode_images")))
    rows = []
    for stage in stage_names:
        rows.append([stage, *(f"{st.get(stage, float('nan')):.2f}" for _, _, st in runs)])
    top = [sum(v for k, v in st.items() if "." not in k and k in stage_names) for _, _, st in runs]
    rows.append(["sum of stages (top level)", *(f"{t:.2f}" for t in top)])
    rows.append(["outside the stages", *(f"{wall - t:.2f}" for (_, wall, _), t in zip(runs, top, strict=True))])
    rows.append(["wall (what the user waits)", *(f"{wall:.2f}" for _, wall, _ in runs)])
    print(table(["seconds", *names], rows))
    cold = [wall for name, wall, _ in runs if name.startswith("cold")]
    warm = [wall for name, wall, _ in runs if name.startswith("warm")]
    per_round = 1 + args.warm  # each round: its cold run, then its warm runs
    ratios = [runs[r][1] / runs[r + 1][1] for r in range(0, len(runs), per_round)]
    print(f"cold: median {statistics.median(cold):.1f} s; warm: median {statistics.median(warm):.1f} s; "
          f"cold / first warm run of the same round: median {statistics.median(ratios):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

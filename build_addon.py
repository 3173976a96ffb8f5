#!/usr/bin/env python3
"""Build the Blender extension zips (one per platform) with pyzmq and msgpack bundled as wheels.

    python build_addon.py                       # all platforms, into dist/
    python build_addon.py --platform linux-x64  # just one (tests use this)

Steps: download the wheels with ``pip download --only-binary=:all:`` into a
cache (``.cache/wheels`` unless ``--wheel-cache``; nothing is fetched twice),
stage a copy of ``blender_addon/`` with the wheels and a manifest that lists
them, validate it with Blender's own packaging CLI (``blender_ext.py``, which
ships inside the ``bpy`` wheel: no Blender binary needed), then run its
``build --split-platforms``. Prints what it built.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "blender_addon"

# Pinned so that a build is reproducible; the versions the add-on is tested with.
REQUIREMENTS = ("pyzmq==27.3.0", "msgpack==1.2.4")
# Blender 4.2-5.0 embed Python 3.11, 5.1+ Python 3.13.
PYTHON_VERSIONS = ("3.11", "3.13")


@dataclass(frozen=True)
class Platform:
    blender: str  # Blender's platform name in the manifest
    pip_tags: tuple[str, ...]  # pip --platform values, most specific last


PLATFORMS = {
    "linux-x64": Platform("linux-x64", ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")),
    "windows-x64": Platform("windows-x64", ("win_amd64",)),
    "macos-arm64": Platform("macos-arm64", ("macosx_11_0_arm64",)),
    "macos-x64": Platform("macos-x64", ("macosx_10_15_x86_64",)),
}

# Files of the package that are not part of the extension.
EXCLUDE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", "wheels")


class BuildError(RuntimeError):
    pass


def blender_ext_cli() -> Path:
    """Blender's packaging CLI from the installed ``bpy`` wheel (found without importing bpy)."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the bpy wheel is not installed: pip install 'bpy==4.5.*' (it ships blender_ext.py)")
    for base in spec.submodule_search_locations:
        hits = sorted(Path(base).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return hits[-1]
    raise BuildError("blender_ext.py not found inside the bpy wheel")


def download_wheels(platforms: list[Platform], cache: Path, requirements: tuple[str, ...]) -> list[Path]:
    """pip download every (platform, Python) combination; returns the wheel files (deduplicated)."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels: set[Path] = set()
    for plat in platforms:
        for py in PYTHON_VERSIONS:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                   "--only-binary=:all:", "--no-deps", "--implementation", "cp",
                   "--python-version", py, "--dest", str(cache)]
            for tag in plat.pip_tags:
                cmd += ["--platform", tag]
            cmd += list(requirements)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"pip download failed for {plat.blender} / Python {py}:\n{proc.stderr.strip()}")
            # pip reports what it saved or found in the cache; pick the matching files ourselves.
            found = _matching_wheels(cache, plat, py, requirements)
            missing = [r for r in requirements if not any(_dist(w) == _dist_of_req(r) for w in found)]
            if missing:
                raise BuildError(f"no wheel of {', '.join(missing)} for {plat.blender} / Python {py}")
            wheels.update(found)
    return sorted(wheels)


def _dist(wheel: Path) -> str:
    return wheel.name.split("-")[0].lower().replace("_", "-")


def _dist_of_req(req: str) -> str:
    return re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0].lower().replace("_", "-")


def _version_of_req(req: str) -> str | None:
    m = re.search(r"==\s*([\w.]+)", req)
    return m.group(1) if m else None


def _matching_wheels(cache: Path, plat: Platform, py: str, requirements: tuple[str, ...]) -> list[Path]:
    """The best cached wheel per requirement for this platform and Python (mirrors pip's choice)."""
    cp = "cp" + py.replace(".", "")
    out = []
    for req in requirements:
        dist, version = _dist_of_req(req), _version_of_req(req)
        best: tuple[int, Path] | None = None
        for wheel in cache.glob("*.whl"):
            parts = wheel.name[:-4].split("-")
            if len(parts) < 5 or _dist(wheel) != dist or (version and parts[1] != version):
                continue
            pytag, abi, plat_tags = parts[-3], parts[-2], parts[-1].split(".")
            if pytag == cp and abi == cp:
                rank = 2
            elif abi == "abi3" and pytag.startswith("cp") and int(pytag[2:]) <= int(cp[2:]):
                rank = 1
            else:
                continue
            if not any(_platform_ok(t, plat) for t in plat_tags):
                continue
            if best is None or rank > best[0]:
                best = (rank, wheel)
        if best is not None:
            out.append(best[1])
    return out


def _platform_ok(tag: str, plat: Platform) -> bool:
    if tag in plat.pip_tags:
        return True
    if plat.blender == "linux-x64":
        m = re.fullmatch(r"manylinux_2_(\d+)_x86_64", tag)
        return bool(m and int(m.group(1)) <= 28)  # Blender 4.2+ needs glibc 2.28 anyway
    if plat.blender.startswith("macos"):
        arch = "arm64" if plat.blender.endswith("arm64") else "x86_64"
        m = re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", tag)
        return bool(m and m.group(3) in (arch, "universal2") and int(m.group(1)) <= 11)
    return False


def write_manifest(src: Path, dst: Path, wheels: list[Path], platforms: list[Platform]) -> None:
    """Copy the manifest, appending `platforms` and `wheels` (TOML written by hand: no tomli_w needed)."""
    text = src.read_text("utf-8")
    if re.search(r"(?m)^\s*(wheels|platforms)\s*=", text):
        raise BuildError("blender_manifest.toml must not list wheels/platforms itself; build_addon.py adds them")
    head, sep, tail = text.partition("\n[")  # top-level keys must precede the first table
    extra = "platforms = [{}]\nwheels = [\n{}]\n".format(
        ", ".join(json.dumps(p.blender) for p in platforms),
        "".join(f"  {json.dumps('./wheels/' + w.name)},\n" for w in wheels),
    )
    dst.write_text(head.rstrip() + "\n\n" + extra + (sep + tail if sep else ""), "utf-8")


def run_cli(cli: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(cli), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"blender_ext.py {args[0]} failed:\n{(proc.stdout + proc.stderr).strip()}")
    return proc.stdout


def build(platform_names: list[str], out_dir: Path, cache: Path) -> list[Path]:
    platforms = [PLATFORMS[n] for n in platform_names]
    cli = blender_ext_cli()
    wheels = download_wheels(platforms, cache, REQUIREMENTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="step1x3d-ext-") as tmp:
        stage = Path(tmp) / "step1x3d"
        shutil.copytree(PACKAGE, stage, ignore=EXCLUDE)
        (stage / "wheels").mkdir()
        for wheel in wheels:
            shutil.copy2(wheel, stage / "wheels" / wheel.name)
        write_manifest(PACKAGE / "blender_manifest.toml", stage / "blender_manifest.toml", wheels, platforms)
        run_cli(cli, "validate", str(stage))
        started = time.time()
        run_cli(cli, "build", "--source-dir", str(stage), "--output-dir", str(out_dir), "--split-platforms")
    return sorted(p for p in out_dir.glob("step1x3d-*.zip") if p.stat().st_mtime >= started - 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORMS),
                        help="build only this platform (repeatable; default: all four)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--wheel-cache", type=Path, default=ROOT / ".cache" / "wheels",
                        help="where downloaded wheels are kept (default: .cache/wheels)")
    args = parser.parse_args(argv)
    try:
        built = build(args.platform or list(PLATFORMS), args.out, args.wheel_cache)
    except BuildError as exc:
        print(f"build_addon: {exc}", file=sys.stderr)
        return 1
    for path in built:
        print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``step1x3d convert IN OUT``: a result we produced (.glb/.gltf) to any format we write, keeping provenance.

The output format follows OUT's suffix (``export.formats.FORMATS``); ``--size`` scales the
result so its largest dimension is that many metres, and every format carries it in its own
units (glTF/USD metres, STEP/3MF millimetres, FBX per engine).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from blender_addon.protocol import provenance as prov
from blender_addon.protocol.settings import JobSettings, SettingsError

from .args import positive_int
from .errors import usage_error

INPUT_SUFFIXES = (".glb", ".gltf")
# Formats that hold the LOD chain in one file (glTF: MSFT_lod; USD: the "LOD" variant set).
LOD_SUFFIXES = (".glb", ".gltf", ".usd", ".usda", ".usdc", ".usdz")
LOD_FILE_SUFFIXES = (".glb", ".obj", ".ply", ".stl")  # formats save_asset writes one file per LOD for


def register(sub: argparse._SubParsersAction) -> None:
    from ..export.formats import SUFFIXES

    conv = sub.add_parser("convert", help="convert a result (.glb) to another format, keeping its provenance",
                          description="Formats by output suffix: " + ", ".join(SUFFIXES))
    conv.add_argument("input", type=Path, metavar="IN", help="a result written by step1x3d (.glb or .gltf)")
    conv.add_argument("output", type=Path, metavar="OUT", help=f"output file ({', '.join(SUFFIXES)})")
    conv.add_argument("--size", type=float, default=None, metavar="METRES",
                      help="largest dimension of the result in metres (default: keep the input's)")
    conv.add_argument("--engine", choices=("unity", "unreal"), default="unity",
                      help=".fbx: Unity (metres, Y up, metallic+smoothness map) or Unreal (centimetres, Z up, ORM)")
    conv.add_argument("--step-faces", type=positive_int, default=None, metavar="N",
                      help=".step: decimate to at most N faces first (default 10000: export under 10 s)")
    conv.add_argument("--step-merge-planar", action="store_true",
                      help=".step: merge coplanar triangles into planar faces (mechanical parts)")
    conv.add_argument("--step-schema", choices=("AP214", "AP242"), default="AP214", help=".step: application protocol")
    conv.add_argument("--lods-as-files", action="store_true",
                      help="also write each LOD as NAME_lodN.EXT (.glb/.obj/.ply/.stl)")
    conv.set_defaults(handler=run)


def _check_size(size: float | None) -> float | None:
    try:
        return JobSettings().replace(size=size).size  # the same range as generate --size
    except SettingsError as exc:
        raise usage_error(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from ..export.files import ExportOptions, save_asset
    from ..export.formats import output_suffix
    from ..export.glb_read import read_gltf

    try:
        output_suffix(args.output)
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    if args.input.suffix.lower() not in INPUT_SUFFIXES:
        raise usage_error(f"convert reads results written by step1x3d ({', '.join(INPUT_SUFFIXES)}), "
                          f"not {args.input.suffix or 'a file without suffix'}")
    if not args.input.is_file():
        raise usage_error(f"{args.input} does not exist")
    if not args.output.parent.exists():
        raise usage_error(f"the output folder {args.output.parent} does not exist")
    if args.output.resolve() == args.input.resolve():
        raise usage_error("OUT is the same file as IN; choose another name")
    size = _check_size(args.size)
    if args.engine != "unity" and args.output.suffix.lower() != ".fbx":
        print("note: --engine applies to .fbx only", file=sys.stderr)

    started = time.monotonic()
    asset = read_gltf(args.input)
    if size is not None:
        from ..pipeline.stages import apply_size

        factor = apply_size([asset.mesh, *asset.lods], size)
        asset.provenance = {**asset.provenance, prov.SIZE: size, prov.CONVERTED_SCALE: factor}
    asset.provenance = {**asset.provenance, prov.CONVERTED_FROM: args.input.name}
    suffix = args.output.suffix.lower()
    if asset.lods and suffix not in LOD_SUFFIXES and not (args.lods_as_files and suffix in LOD_FILE_SUFFIXES):
        hint = " (--lods-as-files writes them as separate files)" if suffix in LOD_FILE_SUFFIXES else ""
        print(f"note: {len(asset.lods)} LODs are not written to {suffix}; "
              f"only {', '.join(LOD_SUFFIXES)} hold them{hint}", file=sys.stderr)
    options = ExportOptions(engine=args.engine, step_faces=args.step_faces,
                            step_merge_planar=args.step_merge_planar, step_schema=args.step_schema)
    written = save_asset(asset, args.output, lods_as_files=args.lods_as_files, options=options)
    names = ", ".join(str(p) for p in written)
    print(f"wrote {names} in {time.monotonic() - started:.1f} s")
    return 0

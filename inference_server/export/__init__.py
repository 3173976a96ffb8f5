"""Stage 8: export to GLB (our own writer), glTF, OBJ (+MTL, PNGs), PLY, STL, 3MF, USD/USDZ, STEP, FBX; LODs."""

from typing import Any

from .files import ExportOptions, save_asset
from .formats import FORMATS, SUFFIXES
from .glb import asset_to_glb, generator_string

__all__ = ["FORMATS", "SUFFIXES", "ExportOptions", "asset_to_glb", "build_lods", "generator_string", "save_asset"]


def __getattr__(name: str) -> Any:
    # build_lods pulls in decimation and the UV kernels; `step1x3d --help` needs neither.
    if name == "build_lods":
        from .lod import build_lods

        return build_lods
    raise AttributeError(name)

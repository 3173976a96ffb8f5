"""Stage 8: export to GLB (our own writer), glTF, OBJ (+MTL, PNGs), PLY, STL, 3MF, USD/USDZ, STEP, FBX; LODs.

Names are loaded on first use: ``export.formats`` (the suffix list every ``--help`` shows) must not
pull in the writers and their numpy/scipy/PIL imports.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .formats import FORMATS, SUFFIXES

if TYPE_CHECKING:  # the real signatures for mypy; at run time __getattr__ imports on first use
    from .files import ExportOptions, save_asset
    from .glb import asset_to_glb, generator_string
    from .lod import build_lods

_LAZY = {
    "ExportOptions": ".files",
    "save_asset": ".files",
    "asset_to_glb": ".glb",
    "generator_string": ".glb",
    "build_lods": ".lod",
}

__all__ = ["FORMATS", "SUFFIXES", "ExportOptions", "asset_to_glb", "build_lods", "generator_string", "save_asset"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

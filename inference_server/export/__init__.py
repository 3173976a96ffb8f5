"""Stage 8: export to GLB (our own writer), OBJ (+MTL, PNGs), PLY and STL, and LOD chains."""

from .files import save_asset
from .glb import asset_to_glb, generator_string
from .lod import build_lods

__all__ = ["asset_to_glb", "build_lods", "generator_string", "save_asset"]

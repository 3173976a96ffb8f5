"""FBX for Unity/Unreal through Blender's exporter (the bpy module)."""

from __future__ import annotations

from pathlib import Path

from ..assets import Asset


def write_fbx(asset: Asset, path: Path, *, engine: str = "unity") -> list[Path]:
    raise RuntimeError("FBX export is not implemented yet")


__all__ = ["write_fbx"]

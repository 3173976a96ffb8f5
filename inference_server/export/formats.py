"""The output formats, by file suffix: the one list ``generate``, ``convert`` and ``save_asset`` use."""

from __future__ import annotations

from pathlib import Path

# suffix -> what it is (shown by --help and in the refusal of an unknown suffix)
FORMATS: dict[str, str] = {
    ".glb": "binary glTF 2.0 (metres, Y up, PBR maps, LODs, provenance)",
    ".gltf": "glTF 2.0 JSON with the binary data and maps embedded",
    ".obj": "Wavefront OBJ + MTL + PNG maps",
    ".ply": "binary PLY with UVs and vertex colours",
    ".stl": "binary STL (geometry only)",
    ".3mf": "3D Manufacturing Format (millimetres)",
    ".usd": "USD, binary crate (metres, Y up, UsdPreviewSurface)",
    ".usda": "USD, text",
    ".usdc": "USD, binary crate",
    ".usdz": "USDZ package for AR Quick Look (ARKit rules)",
    ".step": "STEP AP214 solid (millimetres)",
    ".stp": "STEP AP214 solid (millimetres)",
    ".fbx": "FBX for Unity or Unreal (needs the bpy module)",
}
SUFFIXES: tuple[str, ...] = tuple(FORMATS)


def output_suffix(path: Path) -> str:
    """The lower-case suffix of ``path`` if it is a format we write; else ValueError naming the known ones."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        shown = suffix or "no suffix"
        raise ValueError(f"unsupported export format {shown!r} for {Path(path).name}; use one of {', '.join(SUFFIXES)}")
    return suffix


__all__ = ["FORMATS", "SUFFIXES", "output_suffix"]

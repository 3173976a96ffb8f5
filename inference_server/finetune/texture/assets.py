"""A textured asset as the renderer needs it: positions, faces, and where each face gets its colour.

trimesh reads GLB/glTF (PBR base colour texture and factor), OBJ + MTL (diffuse map and colour)
and PLY with vertex colours. A scene's meshes are flattened with their node transforms; each
keeps its own texture ("part"), so several materials render correctly without re-packing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..prepcache import PrepError

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
# Files that travel with a mesh (materials, textures, buffers, concept images): not reported.
COMPANION_SUFFIXES = (".mtl", ".png", ".jpg", ".jpeg", ".bin", ".tga", ".bmp", ".webp", ".ktx2")
REFERENCE_SUFFIX = ".ref.png"  # an artist's concept image paired with <name>.<ext>


@dataclass
class Part:
    """One mesh of the asset: faces [start, stop) of the flattened mesh and its colour source."""

    start: int
    stop: int
    factor: np.ndarray  # (3,) float in [0, 1]: base colour factor (multiplies the texture)
    texture: np.ndarray | None = None  # (H, W, 3) float32 in [0, 1], sRGB as stored


@dataclass
class TexturedAsset:
    positions: np.ndarray  # (V, 3) float32, glTF frame (Y up)
    faces: np.ndarray  # (F, 3) int64
    uvs: np.ndarray  # (V, 2) float32, trimesh's convention (v up); zeros where a part has no UVs
    colors: np.ndarray  # (V, 3) float32 vertex colours in [0, 1] (ones where there are none)
    parts: list[Part] = field(default_factory=list)


def _image(value: object) -> np.ndarray | None:
    if value is None:
        return None
    array = np.asarray(value.convert("RGB") if hasattr(value, "convert") else value)
    return array[..., :3].astype(np.float32) / 255.0


def _factor(value: object) -> np.ndarray:
    if value is None:
        return np.ones(3, np.float32)
    f = np.asarray(value, np.float32).reshape(-1)[:3]
    return f / 255.0 if f.max() > 1.0 else f  # trimesh stores factors as uint8 or floats


def _colour_source(geom: object) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None, bool]:
    """(uv, factor, texture, has_colour) of one trimesh geometry."""
    visual = getattr(geom, "visual", None)
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        material = visual.material  # type: ignore[union-attr]
        if hasattr(material, "baseColorTexture"):  # PBR (glTF)
            texture, factor = _image(material.baseColorTexture), _factor(material.baseColorFactor)
        else:  # SimpleMaterial (OBJ + MTL): the diffuse map replaces Kd, as Blender's OBJ import reads it
            texture = _image(getattr(material, "image", None))
            factor = np.ones(3, np.float32) if texture is not None else _factor(getattr(material, "diffuse", None))
        uv = getattr(visual, "uv", None)
        if uv is None:
            texture = None
        return (None if uv is None else np.asarray(uv, np.float32)), factor, texture, True
    if kind == "vertex":
        return None, np.ones(3, np.float32), None, True
    return None, np.ones(3, np.float32), None, False


def load_asset(path: Path) -> TexturedAsset:
    """Read ``path``; :class:`PrepError` when it is not a mesh with a base colour."""
    import trimesh

    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many types for broken files
        raise PrepError(f"not a readable mesh ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    found = loaded.dump() if isinstance(loaded, trimesh.Scene) else [loaded]
    geoms: list[Any] = [g for g in found if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if not geoms:
        raise PrepError("holds no triangle mesh")
    positions, faces, uvs, colors, parts = [], [], [], [], []
    offset = face_offset = 0
    coloured = False
    for geom in geoms:
        uv, factor, texture, has_colour = _colour_source(geom)
        coloured |= has_colour
        n = len(geom.vertices)
        positions.append(np.asarray(geom.vertices, np.float32))
        faces.append(np.asarray(geom.faces, np.int64) + offset)
        uvs.append(uv if uv is not None and len(uv) == n else np.zeros((n, 2), np.float32))
        vc = np.ones((n, 3), np.float32)
        if getattr(geom.visual, "kind", None) == "vertex":
            vc = np.asarray(geom.visual.vertex_colors, np.float32)[:, :3] / 255.0
        colors.append(vc)
        parts.append(Part(face_offset, face_offset + len(geom.faces), factor, texture))
        offset += n
        face_offset += len(geom.faces)
    if not coloured:
        raise PrepError("has no base colour (no texture, material colour or vertex colours) to learn a style from")
    return TexturedAsset(np.concatenate(positions), np.concatenate(faces), np.concatenate(uvs).astype(np.float32),
                         np.concatenate(colors), parts)


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear, repeating lookup of (N, 2) trimesh UVs (v up) -> (N, 3)."""
    h, w = texture.shape[:2]
    x = (uv[:, 0] % 1.0) * w - 0.5
    y = (1.0 - uv[:, 1] % 1.0) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, x1, y0, y1 = x0 % w, (x0 + 1) % w, y0 % h, (y0 + 1) % h
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def reference_file(source: Path) -> Path | None:
    """``<name>.ref.png`` beside ``<name>.<ext>``, when the folder has one."""
    candidate = source.with_name(source.stem + REFERENCE_SUFFIX)
    return candidate if candidate.is_file() else None

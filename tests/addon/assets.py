"""Small, deterministic test assets (numpy + Pillow, no bpy): a textured cube in the glTF frame."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Per face: outward normal and the two in-plane axes (u, v) chosen so corners come out counter-clockwise.
_FACES = [
    ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    ((0, 1, 0), (1, 0, 0), (0, 0, -1)),
    ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    ((0, 0, -1), (-1, 0, 0), (0, 1, 0)),
]


def cube_arrays(size: float = 0.5) -> dict[str, np.ndarray]:
    """A cube split per face (24 vertices, 12 triangles), with UVs in a 3x2 atlas and normals."""
    positions, normals, uvs, faces = [], [], [], []
    for i, (n, u, v) in enumerate(_FACES):
        n_, u_, v_ = (np.array(a, dtype=np.float32) for a in (n, u, v))
        base = len(positions)
        col, row = i % 3, i // 3
        for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            positions.append(size * (n_ + su * u_ + sv * v_))
            normals.append(n_)
            # glTF UVs: origin top-left, v down.
            uvs.append(((col + (su + 1) / 2) / 3, (row + (1 - (sv + 1) / 2)) / 2))
        faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return {
        "positions": np.asarray(positions, dtype=np.float32),
        "faces": np.asarray(faces, dtype=np.uint32),
        "uvs": np.asarray(uvs, dtype=np.float32),
        "normals": np.asarray(normals, dtype=np.float32),
    }


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def solid_rgb(size: int, colour: tuple[int, int, int]) -> np.ndarray:
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[:] = colour
    return img


def cube_textures(size: int = 64) -> dict[str, bytes]:
    """Three maps: a checker base colour, an ORM map and a flat normal map."""
    yy, xx = np.mgrid[0:size, 0:size]
    checker = (((xx // 8) + (yy // 8)) % 2).astype(np.uint8)
    base = np.stack([checker * 200 + 30, 80 + 0 * checker, 255 - checker * 200], axis=-1).astype(np.uint8)
    return {
        "base_color": png_bytes(base),
        "orm": png_bytes(solid_rgb(size, (255, 140, 20))),
        "normal": png_bytes(solid_rgb(size, (128, 128, 255))),
    }


def reference_png(size: int = 64, colour: tuple[int, int, int] = (200, 60, 40)) -> bytes:
    """A reference image: a coloured disc on a transparent background (RGBA PNG)."""
    yy, xx = np.mgrid[0:size, 0:size]
    inside = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size * 0.4) ** 2
    rgba = np.zeros((size, size, 4), dtype=np.uint8)
    rgba[inside] = (*colour, 255)
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return buf.getvalue()

"""Vertex set-up shared by every rasterizer implementation, and the :class:`Raster` result.

Screen mapping: NDC x in [-1, 1] -> columns [0, W], NDC y -> rows [H, 0] (row 0 at the top,
image up = +Y). Pixel (row r, column c) is sampled at its centre (c + 0.5, r + 0.5).

Vertices are snapped to a fixed-point grid of 1/256 pixel and the edge functions are
evaluated in int64, so the inside test is exact: with the top-left fill rule a pixel centre
on an edge shared by two triangles belongs to exactly one of them (no cracks, no double
coverage), the same in every implementation. Coordinates are limited to a guard band of
+-2^21 pixels (so products stay below 2^62); triangles reaching beyond it, or behind the
camera (clip w <= 0), are dropped rather than clipped: our cameras always sit outside the mesh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SUBPIXEL_BITS = 8
SUBPIXEL = 1 << SUBPIXEL_BITS
HALF_SUBPIXEL = SUBPIXEL // 2
GUARD_PIXELS = float(1 << 21)
MIN_W = 1e-9


@dataclass
class Raster:
    """Per-pixel visibility of a mesh.

    face_id: (H, W) int32, index of the visible face, -1 where empty.
    bary:    (H, W, 3) float32, perspective-correct barycentrics of that face's vertices
             in the order of ``faces[face_id]`` (zeros where empty).
    depth:   (H, W) float32, window depth in [0, 1] (NDC z mapped, 0 at the near plane;
             +inf where empty). Linear in eye distance for orthographic cameras.
    Arrays are numpy, or torch tensors on the inputs' device when the inputs were tensors.
    """

    face_id: Any
    bary: Any
    depth: Any

    @property
    def height(self) -> int:
        return int(self.face_id.shape[0])

    @property
    def width(self) -> int:
        return int(self.face_id.shape[1])

    @property
    def mask(self) -> Any:
        """(H, W) bool: covered pixels."""
        return self.face_id >= 0


def empty_raster(width: int, height: int, with_bary: bool = True) -> Raster:
    """An all-empty raster. Without barycentrics, ``bary`` is a read-only zero view (no memory)."""
    bary = np.zeros((height, width, 3), np.float32) if with_bary else np.broadcast_to(np.float32(0), (height, width, 3))
    return Raster(np.full((height, width), -1, np.int32), bary, np.full((height, width), np.inf, np.float32))


@dataclass
class ScreenVertices:
    """Vertices in screen space: fixed-point x/y (int64), window depth and 1/w (float64), validity."""

    ix: np.ndarray
    iy: np.ndarray
    z: np.ndarray
    inv_w: np.ndarray
    valid: np.ndarray  # bool


def transform_vertices(positions: np.ndarray, view_proj: np.ndarray, width: int, height: int) -> ScreenVertices:
    """Project (V, 3) world positions through a (4, 4) view-projection to the screen (float64 throughout)."""
    p = np.asarray(positions, np.float64).reshape(-1, 3)
    m = np.asarray(view_proj, np.float64).reshape(4, 4)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite vertices are flagged invalid below
        clip = p @ m[:, :3].T + m[:, 3]
        w = clip[:, 3]
        valid = np.isfinite(clip).all(axis=1) & (w > MIN_W)
        w_safe = np.where(valid, w, 1.0)
        sx = (clip[:, 0] / w_safe + 1.0) * 0.5 * width
        sy = (1.0 - clip[:, 1] / w_safe) * 0.5 * height
        z = (clip[:, 2] / w_safe + 1.0) * 0.5
        valid &= (np.abs(sx) < GUARD_PIXELS) & (np.abs(sy) < GUARD_PIXELS)
    ix = np.where(valid, np.rint(sx * SUBPIXEL), 0).astype(np.int64)
    iy = np.where(valid, np.rint(sy * SUBPIXEL), 0).astype(np.int64)
    return ScreenVertices(ix, iy, np.where(valid, z, 0.0), np.where(valid, 1.0 / w_safe, 0.0), valid)


def check_faces(faces: Any, vertex_count: int) -> np.ndarray:
    """(F, 3) int64 face indices, validated against the vertex count."""
    f = np.asarray(faces).reshape(-1, 3).astype(np.int64, copy=False)
    if f.size and (f.min() < 0 or f.max() >= vertex_count):
        raise ValueError(f"face indices must lie in [0, {vertex_count}); got [{f.min()}, {f.max()}]")
    return f


def uv_to_clip_positions(uvs: np.ndarray) -> np.ndarray:
    """glTF UVs (V, 2) -> positions whose identity projection lands texel (u*W, v*H), all at depth 0.5."""
    uv = np.asarray(uvs, np.float64).reshape(-1, 2)
    return np.stack([uv[:, 0] * 2.0 - 1.0, 1.0 - uv[:, 1] * 2.0, np.zeros(len(uv))], axis=1)

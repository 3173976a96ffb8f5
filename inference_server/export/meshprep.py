"""Make a MeshData safe to serialise: dtypes, unit normals, valid tangents.

The Khronos validator flags non-unit normals and tangents whose w is not +-1, and
engines render garbage from them, so every writer goes through here.
"""

from __future__ import annotations

import numpy as np

from ..assets import MeshData
from ..meshing.cleanup import vertex_normals as _area_weighted_normals


def vertex_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (N, 3) float32; isolated or degenerate vertices get +Y."""
    return _area_weighted_normals(positions, faces, fallback=(0.0, 1.0, 0.0))


def unit_or(vectors: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Normalise rows; rows of (near) zero length become ``fallback``."""
    v = np.asarray(vectors, dtype=np.float64)
    length = np.linalg.norm(v, axis=1, keepdims=True)
    good = (length[:, 0] > 1e-12) & np.isfinite(length[:, 0])
    out = np.empty_like(v)
    out[good] = v[good] / length[good]
    out[~good] = fallback
    return out


def prepare_mesh(mesh: MeshData, *, need_tangents: bool = False) -> MeshData:
    """Return a copy with float32/uint32 arrays, unit normals and (if asked) valid tangents."""
    positions = np.ascontiguousarray(mesh.positions, dtype=np.float32)
    faces = np.ascontiguousarray(mesh.faces, dtype=np.uint32)
    normals = mesh.normals
    if normals is None and mesh.smooth:
        normals = vertex_normals(positions, faces)
    elif normals is not None:
        normals = unit_or(normals, np.array([0.0, 1.0, 0.0])).astype(np.float32)
    uvs = None if mesh.uvs is None else np.ascontiguousarray(mesh.uvs, dtype=np.float32)
    tangents = None
    if need_tangents and uvs is not None:
        tangents = mesh.tangents
        if tangents is None or np.shape(tangents) != (positions.shape[0], 4):
            from ..texturing.tangents import compute_tangents  # lazy: keeps export light to import

            if normals is None:
                normals = vertex_normals(positions, faces)
            tangents = compute_tangents(MeshData(positions, faces, uvs=uvs, normals=normals))
        tangents = np.asarray(tangents, dtype=np.float32)
        xyz = unit_or(tangents[:, :3], np.array([1.0, 0.0, 0.0]))
        w = np.where(tangents[:, 3] < 0, -1.0, 1.0)
        tangents = np.hstack([xyz, w[:, None]]).astype(np.float32)
    return MeshData(positions=positions, faces=faces, uvs=uvs, normals=normals, tangents=tangents, smooth=mesh.smooth)


__all__ = ["prepare_mesh", "unit_or", "vertex_normals"]

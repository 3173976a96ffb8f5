"""Checks on a mesh sent by a client (texture-only jobs), shared by every backend.

A client mesh is untrusted input: it must never crash a worker or produce an
asset that silently drops the artist's geometry.
"""

from __future__ import annotations

import numpy as np

from ..assets import MeshData
from .base import PipelineError

MAX_CLIENT_FACES = 2_000_000


def validate_client_mesh(mesh: MeshData | None) -> MeshData:
    """Return a normalised copy (float32 positions, uint32 faces) or raise ``bad_mesh``."""
    if mesh is None:
        raise PipelineError("a texture-only job needs a mesh: select a mesh object to retexture", code="bad_mesh")
    positions = np.asarray(mesh.positions)
    faces = np.asarray(mesh.faces)
    if positions.ndim != 2 or positions.shape[1] != 3 or positions.shape[0] < 3:
        raise PipelineError("the mesh needs at least 3 vertices given as (N, 3) positions", code="bad_mesh")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] < 1:
        raise PipelineError("the mesh needs at least one triangle given as (M, 3) vertex indices", code="bad_mesh")
    if faces.shape[0] > MAX_CLIENT_FACES:
        raise PipelineError(
            f"the mesh has {faces.shape[0]:,} triangles; decimate it below {MAX_CLIENT_FACES:,} first", code="bad_mesh"
        )
    if not np.issubdtype(faces.dtype, np.integer):
        raise PipelineError("mesh face indices must be integers", code="bad_mesh")
    if faces.min() < 0 or faces.max() >= positions.shape[0]:
        raise PipelineError("mesh face indices point past the vertex list", code="bad_mesh")
    positions = positions.astype(np.float32, copy=False)
    if not np.isfinite(positions).all():
        raise PipelineError("the mesh has vertices at infinity or NaN positions", code="bad_mesh")
    extent = float(np.ptp(positions, axis=0).max())
    if extent <= 0.0:
        raise PipelineError("the mesh has no extent (all vertices at one point)", code="bad_mesh")
    uvs = None if mesh.uvs is None else np.asarray(mesh.uvs, dtype=np.float32)
    if uvs is not None and uvs.shape != (positions.shape[0], 2):
        raise PipelineError("mesh UVs must be one (u, v) pair per vertex", code="bad_mesh")
    normals = None if mesh.normals is None else np.asarray(mesh.normals, dtype=np.float32)
    if normals is not None and normals.shape != positions.shape:
        normals = None  # normals are recomputed downstream; a bad set is not worth failing the job
    return MeshData(
        positions=positions, faces=faces.astype(np.uint32, copy=False), uvs=uvs, normals=normals, smooth=mesh.smooth
    )


def has_usable_uvs(mesh: MeshData, *, min_area: float = 0.05) -> bool:
    """True when the mesh's UVs can carry a texture: finite, inside [0, 1], covering some area.

    Overlapping charts are tolerated (mirrored UVs are a deliberate artist choice);
    zero-area or out-of-range layouts are not, because baking into them loses the texture.
    """
    if mesh.uvs is None:
        return False
    uv = np.asarray(mesh.uvs, dtype=np.float64)
    if not np.isfinite(uv).all() or uv.min() < -1e-3 or uv.max() > 1 + 1e-3:
        return False
    a, b, c = (uv[mesh.faces[:, i].astype(np.int64)] for i in range(3))
    cross: np.ndarray = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    area = 0.5 * np.abs(cross)
    if (area > 1e-12).mean() < 0.95:  # many collapsed triangles: the layout cannot hold a texture
        return False
    return bool(area.sum() >= min_area)

"""Result mesh (wire arrays, glTF frame) -> flat arrays ready for Blender's attribute API.

Everything is validated *before* Blender creates any datablock, so a malformed
result becomes one clear sentence instead of a half-built object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..protocol.errors import Step1X3DError
from .axes import flip_v, gltf_to_blender_vectors


@dataclass(frozen=True)
class BlenderMeshArrays:
    """Arrays laid out the way ``foreach_set`` wants them (flat, C-contiguous, right dtype)."""

    positions: np.ndarray  # (N*3,) float32, Blender frame
    corner_verts: np.ndarray  # (M*3,) int32: vertex index of each face corner
    loop_starts: np.ndarray  # (M,) int32: first corner of each triangle
    corner_uvs: np.ndarray | None  # (M*3*2,) float32, Blender UV convention, or None
    vertex_normals: np.ndarray | None  # (N, 3) float32, Blender frame, or None
    smooth: bool

    @property
    def vertex_count(self) -> int:
        return int(self.positions.shape[0] // 3)

    @property
    def face_count(self) -> int:
        return int(self.loop_starts.shape[0])


def _array(mesh: Mapping[str, Any], key: str, cols: int, *, required: bool) -> np.ndarray | None:
    value = mesh.get(key)
    if value is None:
        if required:
            raise Step1X3DError(f"The server's mesh has no {key}.", "bad_mesh")
        return None
    arr = np.asarray(value)
    if arr.ndim == 1 and arr.size % cols == 0:
        arr = arr.reshape(-1, cols)  # tolerate flat arrays
    if arr.ndim != 2 or arr.shape[1] != cols:
        raise Step1X3DError(f"The server's mesh {key} have shape {arr.shape}, expected (n, {cols}).", "bad_mesh")
    return arr


def blender_arrays_from_result(mesh: Mapping[str, Any]) -> BlenderMeshArrays:
    """Validate a result mesh ``{"positions", "faces", "uvs"?, "normals"?, "smooth"?}`` and convert it."""
    positions = _array(mesh, "positions", 3, required=True)
    faces = _array(mesh, "faces", 3, required=True)
    assert positions is not None and faces is not None
    n = positions.shape[0]
    if n == 0 or faces.shape[0] == 0:
        raise Step1X3DError("The server sent an empty mesh.", "bad_mesh")
    if not np.issubdtype(faces.dtype, np.integer):
        raise Step1X3DError("The server's mesh faces are not integer indices.", "bad_mesh")
    if not np.isfinite(positions).all():
        raise Step1X3DError("The server's mesh has non-finite vertex positions.", "bad_mesh")
    if faces.min() < 0 or faces.max() >= n:
        raise Step1X3DError("The server's mesh refers to vertices that do not exist.", "bad_mesh")
    if n >= 2**31:
        raise Step1X3DError("The server's mesh is too large for Blender.", "bad_mesh")

    corner_verts = np.ascontiguousarray(faces, dtype=np.int32).ravel()
    loop_starts = np.arange(0, corner_verts.size, 3, dtype=np.int32)

    uvs = _array(mesh, "uvs", 2, required=False)
    corner_uvs = None
    if uvs is not None:
        if uvs.shape[0] != n:
            raise Step1X3DError("The server's mesh has a different number of UVs and vertices.", "bad_mesh")
        # Blender stores UVs per face corner; the wire stores them per (seam-split) vertex.
        corner_uvs = np.ascontiguousarray(flip_v(uvs)[corner_verts]).ravel()

    normals = _array(mesh, "normals", 3, required=False)
    vertex_normals = None
    if normals is not None:
        if normals.shape[0] != n:
            raise Step1X3DError("The server's mesh has a different number of normals and vertices.", "bad_mesh")
        converted = gltf_to_blender_vectors(normals)
        length = np.linalg.norm(converted, axis=1)
        # Unusable normals are dropped (Blender then computes its own), not worth failing an import over.
        if np.isfinite(length).all() and length.min() > 1e-8:
            vertex_normals = np.ascontiguousarray(converted / length[:, None], dtype=np.float32)

    return BlenderMeshArrays(
        positions=np.ascontiguousarray(gltf_to_blender_vectors(positions)).ravel(),
        corner_verts=corner_verts,
        loop_starts=loop_starts,
        corner_uvs=corner_uvs,
        vertex_normals=vertex_normals,
        smooth=bool(mesh.get("smooth", True)),
    )

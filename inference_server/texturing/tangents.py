"""Per-vertex tangents in the MikkTSpace style (what glTF viewers and Blender expect).

Per face: the tangent T = dP/du and bitangent B = dP/dv' from the UV gradient,
where v' = 1 - v: glTF stores v downwards, but a +Y (OpenGL) normal map's green
axis points up the image, i.e. towards decreasing glTF v. Face vectors are
accumulated per vertex weighted by the corner angle (as MikkTSpace does, so the
result does not depend on how a polygon was triangulated), Gram-Schmidt
orthogonalised against the vertex normal, and the handedness
w = sign(dot(cross(N, T), B)) is stored so that B = cross(N, T) * w (glTF spec).
Vertices are already split at UV seams, so accumulating over shared vertices
never mixes charts; mirrored charts get w = -1.
"""

from __future__ import annotations

import numpy as np

from ..assets import MeshData


def _corner_angles(p: np.ndarray) -> np.ndarray:
    """(M, 3) interior angle at each corner of each triangle."""
    angles = np.empty(p.shape[:2])
    for k in range(3):
        a = p[:, (k + 1) % 3] - p[:, k]
        b = p[:, (k + 2) % 3] - p[:, k]
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
        angles[:, k] = np.arccos(np.clip(cos, -1.0, 1.0))
    return angles


def compute_tangents(mesh: MeshData) -> np.ndarray:
    """(N, 4) float32 unit tangents (xyz) with handedness (w = +-1). Needs uvs and normals."""
    if mesh.uvs is None:
        raise ValueError("tangents need uvs")
    from ..export.meshprep import unit_or, vertex_normals

    pos = np.asarray(mesh.positions, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    normals = np.asarray(mesh.normals if mesh.normals is not None else vertex_normals(pos, faces), dtype=np.float64)
    uv = np.asarray(mesh.uvs, dtype=np.float64).copy()
    uv[:, 1] = 1.0 - uv[:, 1]

    p = pos[faces]
    t = uv[faces]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = np.abs(det) > 1e-20
    r = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)[:, None]
    face_t = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    face_b = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    # Normalise per face so that big-UV faces do not dominate; weight by corner angle.
    face_t = unit_or(face_t, np.zeros(3))
    face_b = unit_or(face_b, np.zeros(3))
    w = _corner_angles(p)
    n = pos.shape[0]
    acc_t = np.zeros((n, 3))
    acc_b = np.zeros((n, 3))
    for k in range(3):
        np.add.at(acc_t, faces[:, k], face_t * w[:, k : k + 1])
        np.add.at(acc_b, faces[:, k], face_b * w[:, k : k + 1])

    # Gram-Schmidt against the normal; fall back to any perpendicular direction.
    tan = acc_t - normals * (acc_t * normals).sum(1, keepdims=True)
    fallback_axis = np.where(np.abs(normals[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    ortho = np.cross(normals, fallback_axis)
    bad = np.linalg.norm(tan, axis=1) < 1e-12
    tan[bad] = ortho[bad]
    tan = unit_or(tan, np.array([1.0, 0.0, 0.0]))
    handed = np.where((np.cross(normals, tan) * acc_b).sum(1) < 0.0, -1.0, 1.0)
    return np.hstack([tan, handed[:, None]]).astype(np.float32)


__all__ = ["compute_tangents"]

"""A Blender mesh (flat arrays) -> the wire mesh of a texture-only job (glTF frame, split at UV seams)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .axes import blender_to_gltf_vectors, flip_v


def client_mesh_payload(
    positions: np.ndarray,
    corner_verts: np.ndarray,
    triangle_corners: np.ndarray,
    corner_uvs: np.ndarray | None = None,
) -> dict[str, Any]:
    """Build ``{"positions", "faces", "uvs"?}`` for the server.

    ``positions``: (N, 3) Blender frame (the object's local frame);
    ``corner_verts``: (L,) vertex of each face corner; ``triangle_corners``: (T*3,)
    corner indices of the triangulation (``loop_triangles.loops``);
    ``corner_uvs``: (L, 2) Blender UVs or None.

    The wire carries one UV per vertex, so vertices are split wherever their
    corners disagree on the UV (seams); without UVs the vertices are kept as is.
    """
    positions = np.asarray(positions, dtype=np.float32).reshape(-1, 3)
    corner_verts = np.asarray(corner_verts, dtype=np.int64).ravel()
    tri = np.asarray(triangle_corners, dtype=np.int64).ravel()
    if tri.size == 0 or tri.size % 3:
        raise ValueError("The selected mesh has no faces to texture.")
    if corner_uvs is None:
        used, faces = np.unique(corner_verts[tri], return_inverse=True)  # drop loose vertices
        return {
            "positions": blender_to_gltf_vectors(positions[used]),
            "faces": faces.reshape(-1, 3).astype(np.uint32),
            "smooth": True,
        }
    uvs = np.asarray(corner_uvs, dtype=np.float32).reshape(-1, 2)
    # Key each used corner by (vertex, exact UV bits): corners sharing both become one wire vertex.
    verts = corner_verts[tri]
    uv_bits = np.ascontiguousarray(uvs[tri]).view(np.uint32).astype(np.int64)
    keys = np.stack([verts, uv_bits[:, 0], uv_bits[:, 1]], axis=1)
    unique, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return {
        "positions": blender_to_gltf_vectors(positions[unique[:, 0]]),
        "faces": np.asarray(inverse).reshape(-1, 3).astype(np.uint32),
        "uvs": flip_v(uvs[tri][first]),
        "smooth": True,
    }

"""Frame conversions between the wire (glTF) and Blender.

The wire uses glTF conventions (see ``inference_server/assets.py``): Y up,
front facing +Z, UV origin at the top-left with v growing downwards.
Blender is Z up with the front facing -Y, UV origin at the bottom-left.
The mapping is the one Blender's own glTF importer uses, so assets line up
with anything imported through File > Import > glTF.
"""

from __future__ import annotations

import numpy as np


def gltf_to_blender_vectors(v: np.ndarray) -> np.ndarray:
    """(x, y, z) glTF -> (x, -z, y) Blender, for positions and normals. Returns float32 (N, 3)."""
    v = np.asarray(v, dtype=np.float32).reshape(-1, 3)
    out = np.empty_like(v)
    out[:, 0] = v[:, 0]
    out[:, 1] = -v[:, 2]
    out[:, 2] = v[:, 1]
    return out


def blender_to_gltf_vectors(v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gltf_to_blender_vectors`: (x, y, z) Blender -> (x, z, -y) glTF."""
    v = np.asarray(v, dtype=np.float32).reshape(-1, 3)
    out = np.empty_like(v)
    out[:, 0] = v[:, 0]
    out[:, 1] = v[:, 2]
    out[:, 2] = -v[:, 1]
    return out


def flip_v(uv: np.ndarray) -> np.ndarray:
    """glTF <-> Blender UVs: v -> 1 - v (the flip is its own inverse). Returns float32 (N, 2)."""
    uv = np.asarray(uv, dtype=np.float32).reshape(-1, 2)
    out = uv.copy()
    out[:, 1] = 1.0 - out[:, 1]
    return out

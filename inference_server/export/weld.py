"""Shared-vertex solids from our seam-split meshes: weld, closedness, decimation (STEP, 3MF)."""

from __future__ import annotations

import numpy as np


def weld(positions: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices at identical positions (UV seams) and drop triangles that collapse."""
    unique, inverse = np.unique(np.asarray(positions, np.float64), axis=0, return_inverse=True)
    tri = inverse.reshape(-1)[np.asarray(faces, np.int64)]
    keep = (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 2] != tri[:, 0])
    tri = tri[keep]
    area2 = np.linalg.norm(np.cross(unique[tri[:, 1]] - unique[tri[:, 0]], unique[tri[:, 2]] - unique[tri[:, 0]]), axis=1)
    tri = tri[area2 > 1e-12 * max(float(area2.max(initial=0.0)), 1e-30)]
    used, compact = np.unique(tri, return_inverse=True)
    return unique[used], compact.reshape(-1, 3)


def is_closed(faces: np.ndarray) -> bool:
    """Every edge shared by exactly two triangles, in opposite directions (closed and oriented)."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    directed, counts = np.unique(edges, axis=0, return_counts=True)
    if (counts != 1).any():
        return False
    reverse = np.ascontiguousarray(directed[:, ::-1])
    view = lambda a: a.view([("a", a.dtype), ("b", a.dtype)]).ravel()  # noqa: E731
    return bool(np.isin(view(reverse), view(np.ascontiguousarray(directed))).all())


def decimate(positions: np.ndarray, faces: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation of a welded mesh towards ``budget`` triangles."""
    import fast_simplification

    if len(faces) <= budget:
        return positions, faces
    reduction = 1.0 - budget / len(faces)
    pos, tri = fast_simplification.simplify(positions.astype(np.float32), faces.astype(np.int32),
                                            target_reduction=reduction)
    return weld(np.asarray(pos, np.float64), np.asarray(tri, np.int64))


__all__ = ["decimate", "is_closed", "weld"]

"""A small numba rasterizer in UV space (texel -> face id + barycentrics).

Kept here rather than waiting for ``kernels.rasterize_uv`` so the UV atlas and the
PBR bake have no cross-team dependency; the convention matches ``assets.py``:
texel (row, col) has its centre at u = (col + 0.5) / W, v = (row + 0.5) / H.
A texel belongs to a triangle when its centre is inside it (edges inclusive);
where triangles overlap the last one wins.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _raster(uv: np.ndarray, faces: np.ndarray, labels: np.ndarray, height: int, width: int,
            face_id: np.ndarray, bary: np.ndarray) -> int:
    conflicts = 0
    eps = -1e-7
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        x0 = uv[a, 0] * width
        y0 = uv[a, 1] * height
        x1 = uv[b, 0] * width
        y1 = uv[b, 1] * height
        x2 = uv[c, 0] * width
        y2 = uv[c, 1] * height
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if area == 0.0:
            continue
        inv = 1.0 / area
        cmin = max(int(np.floor(min(x0, min(x1, x2)) - 0.5)), 0)
        cmax = min(int(np.ceil(max(x0, max(x1, x2)) - 0.5)), width - 1)
        rmin = max(int(np.floor(min(y0, min(y1, y2)) - 0.5)), 0)
        rmax = min(int(np.ceil(max(y0, max(y1, y2)) - 0.5)), height - 1)
        for r in range(rmin, rmax + 1):
            py = r + 0.5
            for cc in range(cmin, cmax + 1):
                px = cc + 0.5
                w0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) * inv
                w1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) * inv
                w2 = 1.0 - w0 - w1
                if w0 >= eps and w1 >= eps and w2 >= eps:
                    prev = face_id[r, cc]
                    if prev >= 0 and labels[prev] != labels[f]:
                        conflicts += 1
                    face_id[r, cc] = f
                    bary[r, cc, 0] = w0
                    bary[r, cc, 1] = w1
                    bary[r, cc, 2] = w2
    return conflicts


def rasterize_uv(
    uvs: np.ndarray, faces: np.ndarray, size: int | tuple[int, int], labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Rasterize UV triangles into an (H, W) grid.

    Returns ``face_id`` (H, W) int32 (-1 where empty), ``bary`` (H, W, 3) float32 and
    the number of texels written by two faces with different ``labels`` (e.g. chart
    ids; 0 means no two charts overlap at texel centres).
    """
    height, width = (size, size) if isinstance(size, int) else size
    face_id = np.full((height, width), -1, dtype=np.int32)
    bary = np.zeros((height, width, 3), dtype=np.float32)
    if labels is None:
        labels = np.zeros(len(faces), dtype=np.int64)
    conflicts = _raster(
        np.ascontiguousarray(uvs, dtype=np.float64),
        np.ascontiguousarray(faces, dtype=np.int64),
        np.ascontiguousarray(labels, dtype=np.int64),
        int(height), int(width), face_id, bary,
    )
    return face_id, bary, int(conflicts)


__all__ = ["rasterize_uv"]

"""Reference rasterizer: one face at a time, vectorised over its bounding box. The test oracle.

Clear rather than fast. It defines the exact semantics the CPU and Triton rasterizers reproduce:
fixed-point edge functions with the top-left rule (see ``_setup``), per-pixel clipping to window
depth [0, 1], a strict z-test in ascending face order (ties keep the lower face id).
"""

from __future__ import annotations

import numpy as np

from ._setup import HALF_SUBPIXEL, SUBPIXEL, Raster, ScreenVertices, empty_raster, transform_vertices


def _is_top_left(dx: int, dy: int) -> int:
    """1 when the directed edge (dx, dy) is a top or left edge of a positively oriented triangle (y down)."""
    return int(dy < 0 or (dy == 0 and dx > 0))


def rasterize(positions: np.ndarray, faces: np.ndarray, view_proj: np.ndarray, width: int, height: int) -> Raster:
    out = empty_raster(width, height)
    sv = transform_vertices(positions, view_proj, width, height)
    fid, depth = out.face_id, out.depth
    for f, (a, b, c) in enumerate(np.asarray(faces, np.int64)):
        if not (sv.valid[a] and sv.valid[b] and sv.valid[c]):
            continue
        x0, y0, x1, y1, x2, y2 = (int(v) for v in (sv.ix[a], sv.iy[a], sv.ix[b], sv.iy[b], sv.ix[c], sv.iy[c]))
        z0, z1, z2 = sv.z[a], sv.z[b], sv.z[c]
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        if area == 0:
            continue
        if area < 0:  # orient positively; barycentrics are un-swapped in resolve_bary
            x1, y1, x2, y2, z1, z2, area = x2, y2, x1, y1, z2, z1, -area
        # Pixels whose centre x*S + S/2 lies in [min, max] of the vertex coordinates.
        cx0 = max(0, -((-(min(x0, x1, x2) - HALF_SUBPIXEL)) // SUBPIXEL))
        cx1 = min(width - 1, (max(x0, x1, x2) - HALF_SUBPIXEL) // SUBPIXEL)
        cy0 = max(0, -((-(min(y0, y1, y2) - HALF_SUBPIXEL)) // SUBPIXEL))
        cy1 = min(height - 1, (max(y0, y1, y2) - HALF_SUBPIXEL) // SUBPIXEL)
        if cx0 > cx1 or cy0 > cy1:
            continue
        px = np.arange(cx0, cx1 + 1, dtype=np.int64)[None, :] * SUBPIXEL + HALF_SUBPIXEL
        py = np.arange(cy0, cy1 + 1, dtype=np.int64)[:, None] * SUBPIXEL + HALF_SUBPIXEL
        e0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)  # edge v1 -> v2, weight of v0
        e1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)  # edge v2 -> v0, weight of v1
        e2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)  # edge v0 -> v1, weight of v2
        inside = (
            (e0 + _is_top_left(x2 - x1, y2 - y1) > 0)
            & (e1 + _is_top_left(x0 - x2, y0 - y2) > 0)
            & (e2 + _is_top_left(x1 - x0, y1 - y0) > 0)
        )
        fa = float(area)
        z = ((e0.astype(np.float64) * z0 + e1.astype(np.float64) * z1 + e2.astype(np.float64) * z2) / fa).astype(np.float32)
        region_depth = depth[cy0 : cy1 + 1, cx0 : cx1 + 1]
        win = inside & (z >= 0.0) & (z <= 1.0) & (z < region_depth)
        region_depth[win] = z[win]
        fid[cy0 : cy1 + 1, cx0 : cx1 + 1][win] = f
    out.bary = resolve_bary(fid, sv, np.asarray(faces, np.int64))
    return out


def resolve_bary(face_id: np.ndarray, sv: ScreenVertices, faces: np.ndarray) -> np.ndarray:
    """Perspective-correct barycentrics (H, W, 3) float32 of each pixel's face, recomputed exactly."""
    h, w = face_id.shape
    bary = np.zeros((h, w, 3), np.float32)
    rows, cols = np.nonzero(face_id >= 0)
    if rows.size == 0:
        return bary
    tri = faces[face_id[rows, cols]]
    px = cols.astype(np.int64) * SUBPIXEL + HALF_SUBPIXEL
    py = rows.astype(np.int64) * SUBPIXEL + HALF_SUBPIXEL
    x, y = sv.ix[tri], sv.iy[tri]  # (N, 3) in the face's own vertex order
    e0 = (x[:, 2] - x[:, 1]) * (py - y[:, 1]) - (y[:, 2] - y[:, 1]) * (px - x[:, 1])
    e1 = (x[:, 0] - x[:, 2]) * (py - y[:, 2]) - (y[:, 0] - y[:, 2]) * (px - x[:, 2])
    e2 = (x[:, 1] - x[:, 0]) * (py - y[:, 0]) - (y[:, 1] - y[:, 0]) * (px - x[:, 0])
    # In the face's own order the signed areas are all of one sign, so the ratio is orientation-free.
    e = np.stack([e0, e1, e2], axis=1).astype(np.float64)
    b = e / e.sum(axis=1, keepdims=True)
    q = b * sv.inv_w[tri]
    bary[rows, cols] = (q / q.sum(axis=1, keepdims=True)).astype(np.float32)
    return bary


def interpolate(face_id: np.ndarray, bary: np.ndarray, faces: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """(H, W, C) float32: barycentric blend of per-vertex ``attributes`` (V, C); zeros where empty."""
    attr = np.asarray(attributes, np.float32)
    out = np.zeros(face_id.shape + (attr.shape[1],), np.float32)
    covered = face_id >= 0
    tri = np.asarray(faces, np.int64)[face_id[covered]]  # (N, 3)
    out[covered] = np.einsum("nk,nkc->nc", bary[covered], attr[tri])
    return out

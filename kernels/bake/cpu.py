"""CPU back-projection of one view onto texel samples: numba, one pass over the texels in parallel."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._prep import TexelSamples, ViewMaps


@njit(cache=True, parallel=True)
def _accumulate(pos, nrm, vp, ortho, toward, eye, lin_map, valid, image, weight, footprint, cos_min, power, tol, acc, wsum):  # type: ignore[no-untyped-def]
    h, w = valid.shape
    nch = image.shape[2]
    for i in prange(pos.shape[0]):
        x = np.float64(pos[i, 0])
        y = np.float64(pos[i, 1])
        z = np.float64(pos[i, 2])
        cw = vp[3, 0] * x + vp[3, 1] * y + vp[3, 2] * z + vp[3, 3]
        if not cw > 1e-9:
            continue
        sx = ((vp[0, 0] * x + vp[0, 1] * y + vp[0, 2] * z + vp[0, 3]) / cw + 1.0) * 0.5 * w
        sy = (1.0 - (vp[1, 0] * x + vp[1, 1] * y + vp[1, 2] * z + vp[1, 3]) / cw) * 0.5 * h
        fx = math.floor(sx)
        fy = math.floor(sy)
        if fx < 0 or fx >= w or fy < 0 or fy >= h:
            continue
        px = int(fx)
        py = int(fy)
        if not valid[py, px]:
            continue
        if ortho:
            lin = -(x * toward[0] + y * toward[1] + z * toward[2])
            dx, dy, dz = toward[0], toward[1], toward[2]
        else:
            lin = cw
            dx, dy, dz = eye[0] - x, eye[1] - y, eye[2] - z
            norm = math.sqrt(dx * dx + dy * dy + dz * dz)
            dx, dy, dz = dx / norm, dy / norm, dz / norm
        c = nrm[i, 0] * dx + nrm[i, 1] * dy + nrm[i, 2] * dz
        if c < cos_min:
            continue
        fp = footprint if ortho else footprint * abs(lin)
        tan = math.sqrt(max(1.0 - c * c, 0.0)) / max(c, 1e-6)
        if abs(lin - lin_map[py, px]) > tol + fp * tan:
            continue
        wt = weight * c**power
        # Bilinear sample at pixel-centre coordinates, edge-clamped (same as the reference).
        bx = min(max(sx - 0.5, 0.0), w - 1.0)
        by = min(max(sy - 0.5, 0.0), h - 1.0)
        x0 = min(int(math.floor(bx)), w - 2 if w > 1 else 0)
        y0 = min(int(math.floor(by)), h - 2 if h > 1 else 0)
        x1 = min(x0 + 1, w - 1)
        y1 = min(y0 + 1, h - 1)
        ax = bx - x0
        ay = by - y0
        for k in range(nch):
            top = image[y0, x0, k] * (1 - ax) + image[y0, x1, k] * ax
            bottom = image[y1, x0, k] * (1 - ax) + image[y1, x1, k] * ax
            acc[i, k] += wt * (top * (1 - ay) + bottom * ay)
        wsum[i] += wt


def accumulate(
    samples: TexelSamples, view: ViewMaps, acc: np.ndarray, wsum: np.ndarray,
    cos_min: float, power: float, tolerance: float,
) -> None:
    if samples.index.size == 0:
        return
    _accumulate(
        samples.positions, samples.normals, np.ascontiguousarray(view.view_proj, np.float64), bool(view.orthographic),
        np.asarray(view.toward_camera, np.float64), np.asarray(view.eye, np.float64),
        np.ascontiguousarray(view.linear_depth, np.float32), np.ascontiguousarray(view.valid),
        np.ascontiguousarray(view.image, np.float32), float(view.weight), float(view.footprint), float(cos_min), float(power), float(tolerance),
        acc, wsum,
    )

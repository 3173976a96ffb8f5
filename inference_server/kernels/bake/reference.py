"""Reference back-projection of one view onto texel samples (numpy, the test oracle)."""

from __future__ import annotations

import numpy as np

from ._prep import TexelSamples, ViewMaps, linear_depth_of_points


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample (H, W, C) at continuous pixel coordinates (x, y) (pixel centres at integers), edge-clamped."""
    h, w = image.shape[:2]
    x = np.clip(x, 0.0, w - 1.0)
    y = np.clip(y, 0.0, h - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2 if w > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2 if h > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def accumulate(
    samples: TexelSamples, view: ViewMaps, acc: np.ndarray, wsum: np.ndarray,
    cos_min: float, power: float, tolerance: float,
) -> None:
    """Add this view's weighted colours to ``acc`` (N, C) float64 and weights to ``wsum`` (N,)."""
    h, w = view.valid.shape
    p = samples.positions.astype(np.float64)
    clip = p @ view.view_proj[:, :3].T + view.view_proj[:, 3]
    cw = clip[:, 3]
    ok = cw > 1e-9
    cw = np.where(ok, cw, 1.0)
    sx = (clip[:, 0] / cw + 1.0) * 0.5 * w
    sy = (1.0 - clip[:, 1] / cw) * 0.5 * h
    px, py = np.floor(sx), np.floor(sy)
    ok &= (px >= 0) & (px < w) & (py >= 0) & (py < h)
    pxi = np.where(ok, px, 0).astype(np.int64)
    pyi = np.where(ok, py, 0).astype(np.int64)
    ok &= view.valid[pyi, pxi]
    lin = linear_depth_of_points(p, view.view_proj, view.depth)
    if view.orthographic:
        to_cam = np.broadcast_to(view.toward_camera, p.shape)
    else:
        d = view.eye - p
        to_cam = d / np.linalg.norm(d, axis=1, keepdims=True)
    cos = np.einsum("nk,nk->n", samples.normals.astype(np.float64), to_cam)
    ok &= cos >= cos_min
    # The pixel centre is up to ~0.7 pixel from the point: allow the surface's climb over a pixel.
    footprint = view.footprint * (1.0 if view.orthographic else np.abs(lin))
    tan = np.sqrt(np.clip(1.0 - cos * cos, 0.0, None)) / np.maximum(cos, 1e-6)
    ok &= np.abs(lin - view.linear_depth[pyi, pxi]) <= tolerance + footprint * tan
    idx = np.flatnonzero(ok)
    weight = view.weight * cos[idx] ** power
    colour = bilinear(view.image, sx[idx] - 0.5, sy[idx] - 0.5)
    acc[idx] += weight[:, None] * colour
    wsum[idx] += weight

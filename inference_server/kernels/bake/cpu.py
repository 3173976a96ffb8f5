"""CPU baker: numba kernels for the texel samples, each view's valid-pixel map and the accumulation.

Same rules and arithmetic as ``reference``; the work per view is one depth-only raster, one pass
to find depth edges, a separable dilation of the rejected pixels, and one parallel pass over the
texels that tests the cheap conditions (facing, angle) before touching the view's images.
"""

from __future__ import annotations

import math

import numpy as np

from ..jit import njit, prange

from ..raster import cpu as raster_cpu
from ..raster import rasterize_uv
from ._prep import BakeView, TexelSamples, ViewMaps, _view_setup, face_normals


@njit(cache=True, parallel=True)
def _count_rows(face_id):  # type: ignore[no-untyped-def]
    h, w = face_id.shape
    counts = np.zeros(h + 1, np.int64)
    for y in prange(h):
        c = 0
        for x in range(w):
            if face_id[y, x] >= 0:
                c += 1
        counts[y + 1] = c
    return np.cumsum(counts)


@njit(cache=True, parallel=True)
def _samples(face_id, bary, positions, faces, vnormals, fnormals, use_vertex_normals, starts, index, pos, nrm):  # type: ignore[no-untyped-def]
    h, w = face_id.shape
    for y in prange(h):
        k = starts[y]
        for x in range(w):
            f = face_id[y, x]
            if f < 0:
                continue
            index[k] = y * w + x
            a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
            b0, b1, b2 = bary[y, x, 0], bary[y, x, 1], bary[y, x, 2]
            for j in range(3):
                pos[k, j] = b0 * positions[a, j] + b1 * positions[b, j] + b2 * positions[c, j]
            if use_vertex_normals:
                n0 = b0 * vnormals[a, 0] + b1 * vnormals[b, 0] + b2 * vnormals[c, 0]
                n1 = b0 * vnormals[a, 1] + b1 * vnormals[b, 1] + b2 * vnormals[c, 1]
                n2 = b0 * vnormals[a, 2] + b1 * vnormals[b, 2] + b2 * vnormals[c, 2]
                length = math.sqrt(n0 * n0 + n1 * n1 + n2 * n2)
                if length > 0:
                    n0, n1, n2 = n0 / length, n1 / length, n2 / length
                nrm[k, 0], nrm[k, 1], nrm[k, 2] = n0, n1, n2
            else:
                nrm[k, 0], nrm[k, 1], nrm[k, 2] = fnormals[f, 0], fnormals[f, 1], fnormals[f, 2]
            k += 1


def texel_samples(
    positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray, normals: np.ndarray | None, width: int, height: int
) -> TexelSamples:
    uvr = rasterize_uv(uvs, faces, width, height, backend="cpu")
    starts = _count_rows(uvr.face_id)
    n = int(starts[-1])
    index = np.empty(n, np.int64)
    pos = np.empty((n, 3), np.float32)
    nrm = np.empty((n, 3), np.float32)
    use_vn = normals is not None
    vn = np.ascontiguousarray(normals if use_vn else np.zeros((1, 3)), np.float32)
    fn = face_normals(positions, faces) if not use_vn else np.zeros((1, 3), np.float32)
    _samples(uvr.face_id, uvr.bary, np.ascontiguousarray(positions, np.float32), faces, vn, fn, use_vn, starts,
             index, pos, nrm)
    return TexelSamples(index, pos, nrm, uvr)


@njit(cache=True, parallel=True)
def _linear_depth(depth, ortho, scale, a, b, lin):  # type: ignore[no-untyped-def]
    """``_prep.linear_depth_of_window`` in one pass (same float64 arithmetic)."""
    h, w = depth.shape
    for y in prange(h):
        for x in range(w):
            d = depth[y, x]
            if not np.isfinite(d):
                lin[y, x] = np.inf
                continue
            ndc = 2.0 * np.float64(d) - 1.0
            lin[y, x] = ndc * scale if ortho else b / (ndc + a)


@njit(cache=True, parallel=True)
def _reject_map(lin, covered, mask, use_mask, ortho, depth_edge, k, bad):  # type: ignore[no-untyped-def]
    """bad = not covered, outside the mask, or on a depth edge (both sides of the jump)."""
    h, w = lin.shape
    for y in prange(h):
        for x in range(w):
            b = not covered[y, x] or (use_mask and not mask[y, x])
            if not b:
                for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0)):
                    yy, xx = y + dy, x + dx
                    if yy < 0 or yy >= h or xx < 0 or xx >= w or not covered[yy, xx]:
                        continue
                    thr = k if ortho else k * min(lin[y, x], lin[yy, xx])
                    if abs(lin[y, x] - lin[yy, xx]) > max(depth_edge, thr):
                        b = True
                        break
            bad[y, x] = b


@njit(cache=True, parallel=True)
def _dilate_rows(src, r, dst):  # type: ignore[no-untyped-def]
    """dst[y, x] = any(src[y, x-r .. x+r]); outside the image counts as set."""
    h, w = src.shape
    for y in prange(h):
        last = -(10**9)  # column of the last set pixel seen, walking right
        for x in range(-r, w):
            xr = x + r
            if xr >= w or src[y, xr]:
                last = xr
            if x >= 0:
                dst[y, x] = x - r < 0 or last >= x - r


@njit(cache=True, parallel=True)
def _dilate_cols_invert(src, r, valid):  # type: ignore[no-untyped-def]
    """valid[y, x] = not any(src[y-r .. y+r, x]); outside the image counts as set.
    Row by row (contiguous reads) rather than down columns."""
    h, w = src.shape
    for y in prange(h):
        if y - r < 0 or y + r >= h:
            valid[y, :] = False
            continue
        for x in range(w):
            valid[y, x] = True
        for yy in range(y - r, y + r + 1):
            for x in range(w):
                if src[yy, x]:
                    valid[y, x] = False


def view_maps(
    positions: np.ndarray, faces: np.ndarray, view: BakeView, erode_px: int, depth_edge: float, max_slope: float,
) -> ViewMaps:
    """Same as ``_prep.view_maps`` (the reference), with numba passes instead of numpy and scipy."""
    image, h, w, vp, cam, model, footprint = _view_setup(view)
    r = raster_cpu.rasterize(positions, faces, vp, w, h, bary=False)
    covered = r.face_id >= 0
    lin = np.empty((h, w), np.float32)
    _linear_depth(r.depth, model.orthographic, model.scale, model.a, model.b, lin)
    use_mask = view.mask is not None
    mask = np.ascontiguousarray(view.mask, bool).reshape(h, w) if use_mask else covered
    bad = np.empty((h, w), np.bool_)
    _reject_map(lin, covered, mask, use_mask, model.orthographic, depth_edge, 1.5 * max_slope * footprint, bad)
    valid = np.empty((h, w), np.bool_)
    if erode_px > 0:
        rows = np.empty_like(bad)
        _dilate_rows(bad, erode_px, rows)
        _dilate_cols_invert(rows, erode_px, valid)
    else:
        np.logical_not(bad, out=valid)
    return ViewMaps(image, lin, valid, vp, cam.orthographic, cam.toward_camera, cam.eye, float(view.weight),
                    footprint, model)


@njit(cache=True, parallel=True)
def _accumulate(pos, nrm, vp, ortho, scale, toward, eye, lin_map, valid, image, weight, footprint, cos_min, power, tol, acc, wsum):  # type: ignore[no-untyped-def]
    h, w = valid.shape
    nch = image.shape[2]
    for i in prange(pos.shape[0]):
        x = np.float64(pos[i, 0])
        y = np.float64(pos[i, 1])
        z = np.float64(pos[i, 2])
        # Facing and angle first: cheap, sequential reads; most texels stop here.
        if ortho:
            dx, dy, dz = toward[0], toward[1], toward[2]
        else:
            dx, dy, dz = eye[0] - x, eye[1] - y, eye[2] - z
            norm = math.sqrt(dx * dx + dy * dy + dz * dz)
            dx, dy, dz = dx / norm, dy / norm, dz / norm
        c = nrm[i, 0] * dx + nrm[i, 1] * dy + nrm[i, 2] * dz
        if c < cos_min:
            continue
        cw = vp[3, 0] * x + vp[3, 1] * y + vp[3, 2] * z + vp[3, 3]
        if not cw > 1e-9:
            continue
        sx = ((vp[0, 0] * x + vp[0, 1] * y + vp[0, 2] * z + vp[0, 3]) / cw + 1.0) * 0.5 * w
        sy = (1.0 - (vp[1, 0] * x + vp[1, 1] * y + vp[1, 2] * z + vp[1, 3]) / cw) * 0.5 * h
        fx = math.floor(sx)
        fy = math.floor(sy)
        if fx < 0 or fx >= w or fy < 0 or fy >= h:
            continue
        px = fx
        py = fy
        if not valid[py, px]:
            continue
        if ortho:
            lin = (vp[2, 0] * x + vp[2, 1] * y + vp[2, 2] * z + vp[2, 3]) * scale
            fp = footprint
        else:
            lin = cw
            fp = footprint * abs(lin)
        tan = math.sqrt(max(1.0 - c * c, 0.0)) / max(c, 1e-6)
        if abs(lin - lin_map[py, px]) > tol + fp * tan:
            continue
        wt = weight * c**power
        # Bilinear sample at pixel-centre coordinates, edge-clamped (same as the reference).
        bx = min(max(sx - 0.5, 0.0), w - 1.0)
        by = min(max(sy - 0.5, 0.0), h - 1.0)
        x0 = min(math.floor(bx), w - 2 if w > 1 else 0)
        y0 = min(math.floor(by), h - 2 if h > 1 else 0)
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
        float(view.depth.scale), np.asarray(view.toward_camera, np.float64), np.asarray(view.eye, np.float64),
        np.ascontiguousarray(view.linear_depth, np.float32), np.ascontiguousarray(view.valid),
        np.ascontiguousarray(view.image, np.float32), float(view.weight), float(view.footprint), float(cos_min),
        float(power), float(tolerance), acc, wsum,
    )


@njit(cache=True, parallel=True)
def _resolve(index, acc, wsum, texture, weight):  # type: ignore[no-untyped-def]
    for i in prange(index.size):
        t = index[i]
        weight[t] = wsum[i]
        if wsum[i] > 0:
            for k in range(acc.shape[1]):
                texture[t, k] = acc[i, k] / wsum[i]


def resolve(index: np.ndarray, acc: np.ndarray, wsum: np.ndarray, texture: np.ndarray, weight: np.ndarray) -> None:
    """Scatter the weighted means and weight sums of the samples into the flat (H*W, C) texture and (H*W,) map."""
    _resolve(index, acc, wsum, texture, weight)

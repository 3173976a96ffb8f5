"""CPU rasterizer: numba, a bounding-box loop per face with incremental integer edge functions.

The image is cut into horizontal bands processed in parallel; each band walks all faces in
ascending order (skipping those whose rows miss it), so the result is identical to the
reference's sequential z-test, with no locks. Memory is the output plus O(V) vertex set-up,
whatever the face count. Barycentrics are resolved afterwards, once per covered pixel, rather
than written on every z-test win.
"""

from __future__ import annotations

import numpy as np

from ..jit import get_num_threads, njit, prange

from ._setup import HALF_SUBPIXEL, SUBPIXEL, Raster, empty_raster, transform_vertices


@njit(cache=True, inline="always")
def _top_left(dx: int, dy: int) -> int:
    return 1 if (dy < 0 or (dy == 0 and dx > 0)) else 0


SPAN_MIN_WIDTH = 12  # below this, testing every pixel of the box beats three integer divisions per row


@njit(cache=True, inline="always")
def _span(e_start: int, step: int, k_lo: int, k_hi: int) -> tuple[int, int]:
    """Narrow [k_lo, k_hi] to the k where e_start + step * k > 0 (exact integer arithmetic)."""
    if step > 0:
        k_lo = max(k_lo, (-e_start) // step + 1)
    elif step < 0:
        k_hi = min(k_hi, (e_start - 1) // (-step))  # largest k with -step * k <= e_start - 1
    elif e_start <= 0:
        k_hi = k_lo - 1
    return k_lo, k_hi


@njit(cache=True, parallel=True)
def _face_rows(ix, iy, valid, faces, height, rows):  # type: ignore[no-untyped-def]
    """Pixel rows [rows[f, 0], rows[f, 1]] each face may cover; empty (1, 0) for invalid or
    zero-area faces. Computed once so the bands scan two small sequential arrays rather than
    gathering every face's vertices once per band."""
    for f in prange(faces.shape[0]):
        a = faces[f, 0]
        b = faces[f, 1]
        c = faces[f, 2]
        rows[f, 0] = 1
        rows[f, 1] = 0
        if not (valid[a] and valid[b] and valid[c]):
            continue
        if (ix[b] - ix[a]) * (iy[c] - iy[a]) - (iy[b] - iy[a]) * (ix[c] - ix[a]) == 0:
            continue
        y0 = iy[a]
        y1 = iy[b]
        y2 = iy[c]
        rows[f, 0] = max(0, -((-(min(y0, min(y1, y2)) - HALF_SUBPIXEL)) // SUBPIXEL))
        rows[f, 1] = min(height - 1, (max(y0, max(y1, y2)) - HALF_SUBPIXEL) // SUBPIXEL)


@njit(cache=True, parallel=True)
def _raster_bands(ix, iy, z, rows, faces, width, height, nbands, face_id, depth):  # type: ignore[no-untyped-def]
    band_h = (height + nbands - 1) // nbands
    nfaces = faces.shape[0]
    for band in prange(nbands):
        ylo_band = band * band_h
        yhi_band = min(height, ylo_band + band_h) - 1
        for f in range(nfaces):
            cy0 = max(ylo_band, rows[f, 0])
            cy1 = min(yhi_band, rows[f, 1])
            if cy0 > cy1:
                continue
            a = faces[f, 0]
            b = faces[f, 1]
            c = faces[f, 2]
            y0 = iy[a]
            y1 = iy[b]
            y2 = iy[c]
            x0 = ix[a]
            x1 = ix[b]
            x2 = ix[c]
            z0 = z[a]
            z1 = z[b]
            z2 = z[c]
            area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
            if area == 0:
                continue
            if area < 0:
                x1, x2 = x2, x1
                y1, y2 = y2, y1
                z1, z2 = z2, z1
                area = -area
            cx0 = max(0, -((-(min(x0, min(x1, x2)) - HALF_SUBPIXEL)) // SUBPIXEL))
            cx1 = min(width - 1, (max(x0, max(x1, x2)) - HALF_SUBPIXEL) // SUBPIXEL)
            if cx0 > cx1:
                continue
            fa = np.float64(area)
            # e_i(px, py) = A_i * px + B_i * py + C_i; stepping one pixel adds A_i*S or B_i*S.
            a0 = -(y2 - y1)
            b0 = x2 - x1
            a1 = -(y0 - y2)
            b1 = x0 - x2
            a2 = -(y1 - y0)
            b2 = x1 - x0
            t0 = _top_left(b0, -a0)
            t1 = _top_left(b1, -a1)
            t2 = _top_left(b2, -a2)
            px0 = cx0 * SUBPIXEL + HALF_SUBPIXEL
            wide = cx1 - cx0 >= SPAN_MIN_WIDTH
            for y in range(cy0, cy1 + 1):
                py = y * SUBPIXEL + HALF_SUBPIXEL
                e0 = b0 * (py - y1) + a0 * (px0 - x1)
                e1 = b1 * (py - y2) + a1 * (px0 - x2)
                e2 = b2 * (py - y0) + a2 * (px0 - x0)
                k_lo = 0
                k_hi = cx1 - cx0
                if wide:
                    # Exact span of the row inside all three edges (integer division), so wide
                    # triangles do not test the empty corners of their bounding box.
                    k_lo, k_hi = _span(e0 + t0, a0 * SUBPIXEL, k_lo, k_hi)
                    k_lo, k_hi = _span(e1 + t1, a1 * SUBPIXEL, k_lo, k_hi)
                    k_lo, k_hi = _span(e2 + t2, a2 * SUBPIXEL, k_lo, k_hi)
                    if k_lo > k_hi:
                        continue
                    e0 += a0 * SUBPIXEL * k_lo
                    e1 += a1 * SUBPIXEL * k_lo
                    e2 += a2 * SUBPIXEL * k_lo
                for x in range(cx0 + k_lo, cx0 + k_hi + 1):
                    if e0 + t0 > 0 and e1 + t1 > 0 and e2 + t2 > 0:
                        zz = np.float32((np.float64(e0) * z0 + np.float64(e1) * z1 + np.float64(e2) * z2) / fa)
                        if zz >= 0.0 and zz <= 1.0 and zz < depth[y, x]:
                            depth[y, x] = zz
                            face_id[y, x] = f
                    e0 += a0 * SUBPIXEL
                    e1 += a1 * SUBPIXEL
                    e2 += a2 * SUBPIXEL


@njit(cache=True, parallel=True)
def _resolve_bary(face_id, ix, iy, inv_w, faces, bary):  # type: ignore[no-untyped-def]
    height, width = face_id.shape
    for y in prange(height):
        py = y * SUBPIXEL + HALF_SUBPIXEL
        for x in range(width):
            f = face_id[y, x]
            if f < 0:
                continue
            px = x * SUBPIXEL + HALF_SUBPIXEL
            a = faces[f, 0]
            b = faces[f, 1]
            c = faces[f, 2]
            e0 = np.float64((ix[c] - ix[b]) * (py - iy[b]) - (iy[c] - iy[b]) * (px - ix[b]))
            e1 = np.float64((ix[a] - ix[c]) * (py - iy[c]) - (iy[a] - iy[c]) * (px - ix[c]))
            e2 = np.float64((ix[b] - ix[a]) * (py - iy[a]) - (iy[b] - iy[a]) * (px - ix[a]))
            s = e0 + e1 + e2
            q0 = e0 / s * inv_w[a]
            q1 = e1 / s * inv_w[b]
            q2 = e2 / s * inv_w[c]
            qs = q0 + q1 + q2
            bary[y, x, 0] = q0 / qs
            bary[y, x, 1] = q1 / qs
            bary[y, x, 2] = q2 / qs


def rasterize(
    positions: np.ndarray, faces: np.ndarray, view_proj: np.ndarray, width: int, height: int, *, bary: bool = True
) -> Raster:
    """See ``kernels.raster.rasterize``. ``bary=False`` skips the barycentrics (left zero) when
    only visibility and depth are needed (the baker's views)."""
    out = empty_raster(width, height, with_bary=bary)
    faces64 = np.ascontiguousarray(faces, np.int64).reshape(-1, 3)
    if faces64.shape[0] == 0:
        return out
    sv = transform_vertices(positions, view_proj, width, height)
    # A few bands per thread balance uneven rows; more bands repeat the per-face row test.
    nbands = max(1, min(height, 4 * get_num_threads()))
    rows = np.empty((faces64.shape[0], 2), np.int64)
    _face_rows(sv.ix, sv.iy, sv.valid, faces64, height, rows)
    _raster_bands(sv.ix, sv.iy, sv.z, rows, faces64, width, height, nbands, out.face_id, out.depth)
    if bary:
        _resolve_bary(out.face_id, sv.ix, sv.iy, sv.inv_w, faces64, out.bary)
    return out


@njit(cache=True, parallel=True)
def _interpolate(face_id, bary, faces, attr, out):  # type: ignore[no-untyped-def]
    height, width = face_id.shape
    nch = attr.shape[1]
    for y in prange(height):
        for x in range(width):
            f = face_id[y, x]
            if f < 0:
                continue
            a = faces[f, 0]
            b = faces[f, 1]
            c = faces[f, 2]
            for k in range(nch):
                out[y, x, k] = bary[y, x, 0] * attr[a, k] + bary[y, x, 1] * attr[b, k] + bary[y, x, 2] * attr[c, k]


def interpolate(face_id: np.ndarray, bary: np.ndarray, faces: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    attr = np.ascontiguousarray(attributes, np.float32)
    out = np.zeros(face_id.shape + (attr.shape[1],), np.float32)
    if attr.shape[0] and face_id.size:
        _interpolate(face_id, bary, np.ascontiguousarray(faces, np.int64).reshape(-1, 3), attr, out)
    return out

"""Pack UV charts into one square texture with a fixed gap between charts.

Why not xatlas' packer: it places charts at random (4096 tries each) in an atlas that grows as
needed, which then has to be scaled back into the texture, gutters included. On our chunked
charts that covered about half of a 2048^2 texture (0.50-0.54, and still 0.54 with no padding
at all); its brute-force mode packs better but took 17 s for 83 charts.

Here every chart is first given the same texel density (UV area made equal to 3-D area, after
undoing any x/y stretch the charting step left) and turned to its smallest bounding rectangle.
At a scale ``t`` (texels per model unit) a chart is described by its profile: the lowest and
highest point of the chart in each one-texel-wide column (exact, from its boundary edges).
Charts go in largest first (by half-perimeter of their rectangle), each at the position and
quarter turn where its top ends lowest ("bottom-left fill"); the texture remembers, per column,
the occupied intervals, so a later, smaller chart can drop into a hole under an overhang.
Every placed chart occupies its profile dilated by the gap sideways and vertically, so texel
centres of two charts end up at least ``gap`` texels apart (the Chebyshev distance that
``quality.min_chart_gap`` measures). A border of ``ceil(gap / 2)`` texels keeps the gap across
the wrap-around of a repeating texture. ``t`` is searched (3-4 packings of 10-150 ms at
20k-200k faces) for the largest scale whose packing fits the square.

Quarter turns never mirror a chart, so winding and tangent-space handedness are kept, and
positions are continuous (nothing snapped), so all charts share exactly one scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from inference_server.kernels.jit import njit

# Orientations tried per chart: 0, 90, 180 and 270 degrees (counter-clockwise in uv).
ORIENTATIONS = 4
# Candidate angles for the smallest bounding rectangle (a quarter turn covers all rectangles).
_RECT_ANGLES = 32
# Positions are scanned every STRIDE columns, then refined around the best (2: half the time,
# same coverage within noise on our meshes).
STRIDE = 2
# Chart orders tried at a scale before calling it too big: more where packing is cheap (few
# charts). On a 20-chart mesh four orders lifted coverage from 0.60 to 0.67; on 80-165 charts
# a second order gained under 0.005 for 10-20% more time.
_ORDER_BUDGET = 80
# The first scale assumes the charts' rectangles, grown by the gap, add up to this much of the
# texture (measured 0.98-1.05 once packed: profiles interlock better than rectangles).
_FIRST_FILL = 1.0


@dataclass
class Packing:
    uvs: np.ndarray  # (N, 2) float64 in [0, 1]
    texels_per_unit: float  # the one scale of every chart (texels per model unit)
    gap_px: int  # guaranteed Chebyshev gap between charts and twice the border, in texels
    used_height_px: float  # packed height inside the border (at most texture_size - 2 * border)
    tries: int  # packings run while searching the scale


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) int64: edges used by exactly one face (chart borders in a mesh split at seams)."""
    f = np.asarray(faces, dtype=np.int64)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    edges.sort(axis=1)
    key = edges[:, 0] * (int(f.max()) + 1) + edges[:, 1]
    _, index, counts = np.unique(key, return_index=True, return_counts=True)
    return edges[index[counts == 1]]


@njit(cache=True)
def _chart_sums(pos, faces, uvs, face_chart, n_charts):  # type: ignore[no-untyped-def]
    """Per chart: 3-D area, UV area, and the area-weighted sums of |d(u)/d(surface)|^2 and
    |d(v)/d(surface)|^2, over faces with area in both (zero-area faces are left out)."""
    a3 = np.zeros(n_charts)
    auv = np.zeros(n_charts)
    ru = np.zeros(n_charts)
    rv = np.zeros(n_charts)
    m = faces.shape[0]
    area = np.empty(m)
    largest = 0.0
    for f in range(m):
        i, j, k = faces[f, 0], faces[f, 1], faces[f, 2]
        ax, ay, az = pos[j, 0] - pos[i, 0], pos[j, 1] - pos[i, 1], pos[j, 2] - pos[i, 2]
        bx, by, bz = pos[k, 0] - pos[i, 0], pos[k, 1] - pos[i, 1], pos[k, 2] - pos[i, 2]
        nx, ny, nz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
        area[f] = 0.5 * math.sqrt(nx * nx + ny * ny + nz * nz)
        largest = max(largest, area[f])
    for f in range(m):
        c = face_chart[f]
        i, j, k = faces[f, 0], faces[f, 1], faces[f, 2]
        du1, dv1 = uvs[j, 0] - uvs[i, 0], uvs[j, 1] - uvs[i, 1]
        du2, dv2 = uvs[k, 0] - uvs[i, 0], uvs[k, 1] - uvs[i, 1]
        area_uv = 0.5 * abs(du1 * dv2 - du2 * dv1)
        if not (area[f] > 1e-20 * largest and area_uv > 0.0):
            continue
        # The face in its own 2-D frame: e1 along x, e2 = (e2x, e2y); J = T P^-1 with
        # P = [[|e1|, e2x], [0, e2y]] and T = [[du1, du2], [dv1, dv2]].
        ax, ay, az = pos[j, 0] - pos[i, 0], pos[j, 1] - pos[i, 1], pos[j, 2] - pos[i, 2]
        bx, by, bz = pos[k, 0] - pos[i, 0], pos[k, 1] - pos[i, 1], pos[k, 2] - pos[i, 2]
        len1 = math.sqrt(ax * ax + ay * ay + az * az)
        e2x = (ax * bx + ay * by + az * bz) / len1
        e2y = 2.0 * area[f] / len1
        ju0, ju1 = du1 / len1, (du2 - du1 * e2x / len1) / e2y
        jv0, jv1 = dv1 / len1, (dv2 - dv1 * e2x / len1) / e2y
        a3[c] += area[f]
        auv[c] += area_uv
        ru[c] += area[f] * (ju0 * ju0 + ju1 * ju1)
        rv[c] += area[f] * (jv0 * jv0 + jv1 * jv1)
    return a3, auv, ru, rv


def uniform_density(
    positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray, face_chart: np.ndarray, n_charts: int
) -> np.ndarray:
    """Per-chart affine fix of uvs: equal x/y scale, and UV area equal to 3-D area.

    The x/y fix: a chart's UVs may have been stretched along u or v (xatlas rounds every chart's
    extents up to whole texels). Among the maps ``diag(a, 1/a)`` applied to a chart, the one that
    minimises the conformal energy sum(|J|_F^2 - 2 det J) is a^4 = sum |J_v|^2 / sum |J_u|^2
    (J = d(uv)/d(surface) per face, rows J_u, J_v, weighted by area); for a conformal (LSCM)
    chart that undoes the stretch exactly. Then the chart is scaled so its UV area equals its
    3-D area: every chart gets the same texel density.
    """
    a3, auv, ru, rv = _chart_sums(np.asarray(positions, dtype=np.float64), np.asarray(faces, dtype=np.int64),
                                  np.asarray(uvs, dtype=np.float64), np.asarray(face_chart, dtype=np.int64), n_charts)
    good = (ru > 0) & (rv > 0) & np.isfinite(ru) & np.isfinite(rv)
    a = np.ones(n_charts)
    a[good] = (rv[good] / ru[good]) ** 0.25
    a = np.clip(a, 0.5, 2.0)  # a sanity bound: rounding never stretches a chart by 2x
    s = np.ones(n_charts)
    has = (auv > 0) & (a3 > 0)
    s[has] = np.sqrt(a3[has] / auv[has])
    # Charts without usable area (all faces degenerate) get the median scale of the others.
    if has.any():
        s[~has] = float(np.median(s[has]))
    # Vertex -> chart (every vertex of a split mesh belongs to one chart).
    vchart = np.zeros(len(uvs), dtype=np.int64)
    vchart[np.asarray(faces, dtype=np.int64).ravel()] = np.repeat(face_chart, 3)
    out = np.asarray(uvs, dtype=np.float64).copy()
    out[:, 0] *= (s * a)[vchart]
    out[:, 1] *= (s / a)[vchart]
    return out


def smallest_rectangles(uv: np.ndarray, vchart: np.ndarray, points: np.ndarray, n_charts: int) -> np.ndarray:
    """Rotate each chart to (nearly) its smallest-area bounding rectangle, wider than tall,
    and move its lower corner to the origin. ``points`` are the vertices that decide the
    rectangle (a chart's boundary vertices). Returns new uvs (N, 2) float64."""
    pc = vchart[points]
    order = np.argsort(pc, kind="stable")
    pts, pc = points[order], pc[order]
    starts = np.flatnonzero(np.r_[True, pc[1:] != pc[:-1]])
    charts_with = pc[starts]
    best_area = np.full(n_charts, np.inf)
    best_angle = np.zeros(n_charts)
    xy = uv[pts]
    for k in range(_RECT_ANGLES):
        ang = 0.5 * math.pi * k / _RECT_ANGLES
        c, s = math.cos(ang), math.sin(ang)
        x = xy[:, 0] * c + xy[:, 1] * s
        y = -xy[:, 0] * s + xy[:, 1] * c
        w = np.maximum.reduceat(x, starts) - np.minimum.reduceat(x, starts)
        h = np.maximum.reduceat(y, starts) - np.minimum.reduceat(y, starts)
        area = w * h
        better = area < best_area[charts_with] * (1 - 1e-9)
        best_area[charts_with[better]] = area[better]
        best_angle[charts_with[better]] = ang
    c, s = np.cos(best_angle)[vchart], np.sin(best_angle)[vchart]
    out = np.stack([uv[:, 0] * c + uv[:, 1] * s, -uv[:, 0] * s + uv[:, 1] * c], axis=1)
    lo = np.full((n_charts, 2), np.inf)
    hi = np.full((n_charts, 2), -np.inf)
    np.minimum.at(lo, vchart, out)
    np.maximum.at(hi, vchart, out)
    lo[~np.isfinite(lo)] = 0.0
    hi[~np.isfinite(hi)] = 0.0
    out -= lo[vchart]
    # Wider than tall (the packer tries all four quarter turns anyway; this only fixes ties).
    tall = (hi[:, 1] - lo[:, 1]) > (hi[:, 0] - lo[:, 0])
    ext = hi - lo
    flip = tall[vchart]
    rot = np.stack([ext[vchart, 1] - out[:, 1], out[:, 0]], axis=1)  # a quarter turn, no mirror
    out[flip] = rot[flip]
    return out


@njit(cache=True, inline="always")
def _update(lo, hi, off, ncols, x, y):  # type: ignore[no-untyped-def]
    col = max(0, min(math.floor(x), ncols - 1))
    lo[off + col] = min(lo[off + col], y)
    hi[off + col] = max(hi[off + col], y)
    if x == col and col > 0:  # on a column line: it bounds the column to its left too
        lo[off + col - 1] = min(lo[off + col - 1], y)
        hi[off + col - 1] = max(hi[off + col - 1], y)


@njit(cache=True)
def _profiles(ex0, ey0, ex1, ey1, edge_start, cols, col_off, scale, lo, hi):  # type: ignore[no-untyped-def]
    """Lowest and highest y of each chart in each unit-wide column of x, from its boundary edges
    (x, y already in the chart's frame, multiplied by ``scale`` here). The extreme of a polygon
    over a vertical strip lies on a boundary vertex inside the strip or where a boundary edge
    crosses the strip's sides, so endpoints plus crossings with every integer x are exact."""
    lo[:] = np.inf
    hi[:] = -np.inf
    for c in range(cols.shape[0]):
        ncols = cols[c]
        off = col_off[c]
        for e in range(edge_start[c], edge_start[c + 1]):
            x0 = ex0[e] * scale
            y0 = ey0[e] * scale
            x1 = ex1[e] * scale
            y1 = ey1[e] * scale
            _update(lo, hi, off, ncols, x0, y0)
            _update(lo, hi, off, ncols, x1, y1)
            if x1 < x0:
                x0, x1 = x1, x0
                y0, y1 = y1, y0
            k0 = math.floor(x0) + 1
            k1 = math.ceil(x1) - 1
            if k1 >= k0:
                slope = (y1 - y0) / (x1 - x0)
                for k in range(k0, k1 + 1):
                    _update(lo, hi, off, ncols, float(k), y0 + (k - x0) * slope)


@njit(cache=True, inline="always")
def _chart_profile(o, wc, hc, ou, ov, lo_u, hi_u, lo_v, hi_v, bottom, top):  # type: ignore[no-untyped-def]
    """Profile of one chart in orientation ``o`` (quarter turns); returns its width in columns."""
    if o == 0:
        for i in range(wc):
            bottom[i] = lo_u[ou + i]
            top[i] = hi_u[ou + i]
        return wc
    if o == 2:  # (u, v) -> (wc - u, hc - v)
        for i in range(wc):
            j = ou + wc - 1 - i
            bottom[i] = hc - hi_u[j]
            top[i] = hc - lo_u[j]
        return wc
    if o == 1:  # (u, v) -> (hc - v, u)
        for i in range(hc):
            j = ov + hc - 1 - i
            bottom[i] = lo_v[j]
            top[i] = hi_v[j]
        return hc
    for i in range(hc):  # o == 3: (u, v) -> (v, wc - u)
        bottom[i] = wc - hi_v[ov + i]
        top[i] = wc - lo_v[ov + i]
    return hc


@njit(cache=True)
def _insert(occ_lo, occ_hi, count, col, lo, hi):  # type: ignore[no-untyped-def]
    """Add [lo, hi] to a column's sorted, disjoint occupied intervals (merging overlaps)."""
    n = count[col]
    k = 0
    while k < n and occ_hi[col, k] < lo:
        k += 1
    e = k
    while e < n and occ_lo[col, e] <= hi:
        lo = min(lo, occ_lo[col, e])
        hi = max(hi, occ_hi[col, e])
        e += 1
    removed = e - k
    if removed == 0:
        for j in range(n, k, -1):
            occ_lo[col, j] = occ_lo[col, j - 1]
            occ_hi[col, j] = occ_hi[col, j - 1]
    elif removed > 1:
        for j in range(e, n):
            occ_lo[col, j - removed + 1] = occ_lo[col, j]
            occ_hi[col, j - removed + 1] = occ_hi[col, j]
    count[col] = n - removed + 1
    occ_lo[col, k] = lo
    occ_hi[col, k] = hi


@njit(cache=True)
def _fit_y(occ_lo, occ_hi, count, x, w, bottom, top, limit, first):  # type: ignore[no-untyped-def]
    """Lowest y >= 0 at which a chart (profile ``bottom``/``top``, ``w`` columns) placed at
    column ``x`` meets no occupied interval, and the column offset that last pushed it up
    (-1 if none). Returns (inf, offset) as soon as y reaches ``limit`` (the caller only wants
    positions strictly lower than its best so far). Each column's intervals are sorted and
    disjoint: a binary search finds the first that can collide. The column ``first``
    is tried before the others: the column that stopped the previous x usually stops this
    one too, which rejects most positions after one column.

    (The interval scans are written out here rather than in a helper: numba ran this loop
    2-4x slower with a helper function, even inlined.)"""
    y = 0.0
    if 0 <= first < w and bottom[first] != np.inf:
        b = bottom[first]
        t = top[first]
        col = x + first
        n = count[col]
        k = 0
        hi_k = n
        while k < hi_k:  # first interval ending at or above y + b (intervals are sorted)
            mid = (k + hi_k) >> 1
            if occ_hi[col, mid] < y + b:
                k = mid + 1
            else:
                hi_k = mid
        while k < n and occ_lo[col, k] <= y + t:
            y = occ_hi[col, k] - b + 1e-9
            k += 1
        if y >= limit:
            return np.inf, first
    stop = -1
    moved = True
    while moved:
        moved = False
        for i in range(w):
            b = bottom[i]
            if b == np.inf:  # an empty column: no constraint
                continue
            t = top[i]
            col = x + i
            n = count[col]
            k = 0
            hi_k = n
            while k < hi_k:
                mid = (k + hi_k) >> 1
                if occ_hi[col, mid] < y + b:
                    k = mid + 1
                else:
                    hi_k = mid
            while k < n and occ_lo[col, k] <= y + t:
                y = occ_hi[col, k] - b + 1e-9
                moved = True
                stop = i
                k += 1
            if y >= limit:
                return np.inf, i
    if y >= limit:
        return np.inf, stop
    return y, stop


@njit(cache=True)
def _pack(  # type: ignore[no-untyped-def]
    order, wcols, hcols, off_u, off_v, lo_u, hi_u, lo_v, hi_v, width, cols, lift, stride, cap, out_x, out_y, out_o
):
    """Bottom-left fill of the charts in ``order`` into ``width`` columns. Returns the packed
    height, np.inf when a chart is wider than the texture however it is turned, or -1 when a
    column ran out of its ``cap`` interval slots (call again with more).

    Positions are scanned every ``stride`` columns, then refined around the best one. A placed
    chart occupies its profile dilated ``cols`` columns sideways and ``lift`` up and down, so a
    later chart is more than ``cols`` columns away or at least ``lift`` apart vertically."""
    occ_lo = np.empty((width, cap))
    occ_hi = np.empty((width, cap))
    count = np.zeros(width, np.int64)
    maxdim = 1
    for c in range(wcols.shape[0]):
        maxdim = max(maxdim, wcols[c], hcols[c])
    bottom = np.empty(maxdim)
    top = np.empty(maxdim)
    best_bottom = np.empty(maxdim)
    best_top = np.empty(maxdim)
    height = 0.0
    for c in order:
        best_score = np.inf
        best_y = np.inf
        best_x = -1
        best_o = 0
        best_w = 0
        for o in range(ORIENTATIONS):
            w = _chart_profile(o, wcols[c], hcols[c], off_u[c], off_v[c], lo_u, hi_u, lo_v, hi_v, bottom, top)
            if w > width:
                continue
            tmax = -np.inf
            for i in range(w):
                tmax = max(tmax, top[i])
            if tmax >= best_score:
                continue  # even at y = 0 this turn cannot end lower
            found = False
            hint = -1
            ox = -1
            for x in range(0, width - w + 1, stride):
                y, stop = _fit_y(occ_lo, occ_hi, count, x, w, bottom, top, best_score - tmax, hint - x)
                if stop >= 0:
                    hint = x + stop
                if y + tmax < best_score:
                    best_score = y + tmax
                    best_y = y
                    best_x = x
                    ox = x
                    found = True
                    if y == 0.0:
                        break  # nothing in this turn can beat resting on the floor
            if found and stride > 1 and best_y > 0.0:
                for x in range(max(0, ox - stride + 1), min(width - w, ox + stride - 1) + 1):
                    if x != ox:
                        y, stop = _fit_y(occ_lo, occ_hi, count, x, w, bottom, top, best_score - tmax, -1)
                        if y + tmax < best_score:
                            best_score = y + tmax
                            best_y = y
                            best_x = x
            if found:
                best_o = o
                best_w = w
                for i in range(w):
                    best_bottom[i] = bottom[i]
                    best_top[i] = top[i]
        if best_x < 0:
            return np.inf
        out_x[c] = best_x
        out_y[c] = best_y
        out_o[c] = best_o
        for i in range(best_w):
            if best_top[i] > -np.inf:
                height = max(height, best_y + best_top[i])
        for k in range(max(0, best_x - cols), min(width, best_x + best_w + cols)):
            mlo = np.inf
            mhi = -np.inf
            for j in range(max(0, k - best_x - cols), min(best_w, k - best_x + cols + 1)):
                mlo = min(mlo, best_bottom[j])
                mhi = max(mhi, best_top[j])
            if mhi > -np.inf:
                if count[k] >= cap:
                    return -1.0
                _insert(occ_lo, occ_hi, count, k, best_y + mlo - lift, best_y + mhi + lift)
    return height


class ChartSet:
    """The charts of a split mesh ready to pack: each in its own frame (lower corner at the
    origin, model units, uniform density), with its boundary edges."""

    def __init__(self, local_uv: np.ndarray, edges: np.ndarray, vchart: np.ndarray, n_charts: int) -> None:
        """``edges``: the charts' boundary edges (:func:`boundary_edges` of the split mesh)."""
        self.n = n_charts
        ec = vchart[edges[:, 0]]
        order = np.argsort(ec, kind="stable")
        edges, ec = edges[order], ec[order]
        self.edge_start = np.searchsorted(ec, np.arange(n_charts + 1)).astype(np.int64)
        a, b = local_uv[edges[:, 0]], local_uv[edges[:, 1]]
        self.ex0, self.ey0 = np.ascontiguousarray(a[:, 0]), np.ascontiguousarray(a[:, 1])
        self.ex1, self.ey1 = np.ascontiguousarray(b[:, 0]), np.ascontiguousarray(b[:, 1])
        ext = np.zeros((n_charts, 2))
        np.maximum.at(ext, vchart, local_uv)
        self.extent = ext  # (n, 2): width and height in model units
        # Largest first, by half-perimeter (the best single order on our meshes), then by area,
        # longer and shorter side for the extra orders tried when packing is cheap.
        keys = [-(ext[:, 0] + ext[:, 1]), -(ext[:, 0] * ext[:, 1]), -ext.max(axis=1), -ext.min(axis=1)]
        self.orders = [np.argsort(k, kind="stable").astype(np.int64) for k in keys]

    def pack(self, scale: float, width: int, gap: int, variant: int = 0) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pack at ``scale`` texels per unit into ``width`` columns: (height, x, y, quarter turns, (w, h) columns)."""
        wc = np.maximum(1, np.ceil(self.extent[:, 0] * scale - 1e-9)).astype(np.int64)
        hc = np.maximum(1, np.ceil(self.extent[:, 1] * scale - 1e-9)).astype(np.int64)
        off_u = np.concatenate([[0], np.cumsum(wc)]).astype(np.int64)
        off_v = np.concatenate([[0], np.cumsum(hc)]).astype(np.int64)
        lo_u, hi_u = np.empty(off_u[-1]), np.empty(off_u[-1])
        lo_v, hi_v = np.empty(off_v[-1]), np.empty(off_v[-1])
        _profiles(self.ex0, self.ey0, self.ex1, self.ey1, self.edge_start, wc, off_u, scale, lo_u, hi_u)
        _profiles(self.ey0, self.ex0, self.ey1, self.ex1, self.edge_start, hc, off_v, scale, lo_v, hi_v)
        # Texel centres of two charts end up >= gap apart: their columns differ by more than
        # gap - 1 (centres >= gap apart in x), or they are more than gap - 1 apart in y (and
        # centres' distances are whole texels). The 0.01 texel covers float32 rounding of uvs.
        g = max(int(gap), 1)
        x = np.zeros(self.n, np.int64)
        y = np.zeros(self.n)
        o = np.zeros(self.n, np.int64)
        cap = 64
        while True:
            height = _pack(self.orders[variant], wc, hc, off_u, off_v, lo_u, hi_u, lo_v, hi_v,
                           int(width), g - 1, g - 1 + 0.01, STRIDE, cap, x, y, o)
            if height >= 0:
                return float(height), x, y, o, np.stack([wc, hc], axis=1)
            cap *= 4


def _grown_area(charts: ChartSet, scale: float, gap: int) -> float:
    w, h = charts.extent[:, 0] * scale, charts.extent[:, 1] * scale
    return float(((w + gap) * (h + gap)).sum())


def _first_scale(charts: ChartSet, room: int, gap: int, fill: float) -> float:
    """The scale at which the charts' rectangles, each grown by the gap, add up to ``fill`` of the room."""
    w, h = charts.extent[:, 0], charts.extent[:, 1]
    a, b, c = float((w * h).sum()), float(gap * (w + h).sum()), float(charts.n * gap * gap) - fill * room * room
    if a <= 0:
        return 1.0
    disc = b * b - 4 * a * c
    return max((-b + math.sqrt(max(disc, 0.0))) / (2 * a), 1e-12)


def pack_charts(
    uvs: np.ndarray,
    positions: np.ndarray,
    faces: np.ndarray,
    face_chart: np.ndarray,
    n_charts: int,
    *,
    texture_size: int,
    gap_px: int,
    max_tries: int = 8,
    tolerance: float = 0.0075,
    check: Callable[[], None] | None = None,
) -> Packing:
    """Place every chart of a split mesh in one ``texture_size`` square, ``gap_px`` texels apart.

    ``uvs`` are any per-chart parametrisation (scale and position are ignored); ``face_chart``
    gives each face's chart, and charts share no vertex. Faces with chart -1 (degenerate faces
    the charting step left out) are collapsed onto one point in the border: no texels, no
    overlap. The scale search stops when the largest fitting scale is known within
    ``tolerance`` or after ``max_tries`` packings; ``check`` is called between packings (to
    cancel by raising).
    """
    face_chart = np.asarray(face_chart, dtype=np.int64)
    faces = np.asarray(faces, dtype=np.int64)
    charted = face_chart >= 0
    # Work on the charted vertices only (renumbered), scatter back at the end.
    keep = np.zeros(len(uvs), dtype=bool)
    keep[faces[charted].ravel()] = True
    sub = np.flatnonzero(keep)
    renum = np.full(len(uvs), -1, dtype=np.int64)
    renum[sub] = np.arange(sub.shape[0])
    cf = renum[faces[charted]]
    vchart = np.zeros(sub.shape[0], dtype=np.int64)
    vchart[cf.ravel()] = np.repeat(face_chart[charted], 3)
    dens = uniform_density(np.asarray(positions)[sub], cf, np.asarray(uvs, dtype=np.float64)[sub],
                           face_chart[charted], n_charts)
    edges = boundary_edges(cf)
    local = smallest_rectangles(dens, vchart, np.unique(edges), n_charts)
    charts = ChartSet(local, edges, vchart, n_charts)

    gap = max(int(gap_px), 1)
    border = math.ceil(gap / 2)
    room = texture_size - 2 * border
    if room < 1:
        raise ValueError("the gap leaves no room in the texture")
    scale = _first_scale(charts, room, gap, _FIRST_FILL)
    variants = min(len(charts.orders), max(1, _ORDER_BUDGET // max(n_charts, 1)))
    best: tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None = None
    too_big = math.inf  # smallest scale seen that did not fit
    tries = 0
    while tries < max_tries or best is None:
        if check is not None:
            check()
        if tries >= max_tries + 40:  # halving 40 times did not help: more charts than texels for the gaps
            raise ValueError(f"{n_charts} charts do not fit one {texture_size}^2 texture {gap} texels apart")
        tries += 1
        for variant in range(variants):
            height, x, y, o, cols = charts.pack(scale, room, gap, variant)
            if height <= room:
                break
        if height <= room:
            if best is None or scale > best[5]:
                best = (height, x, y, o, cols, scale)
        else:
            too_big = min(too_big, scale)
        if best is not None and too_big / best[5] - 1 < tolerance:
            break
        if math.isfinite(height) and height > 0:
            # How full this packing was (gap-grown rectangles over the area used); aim the next
            # one, at that fill, at the whole room.
            fill = _grown_area(charts, scale, gap) / (room * height)
            nxt = _first_scale(charts, room, gap, fill)
        else:
            nxt = 0.5 * scale
        if best is not None:
            nxt = max(nxt, best[5] * (1 + tolerance / 2))  # only look above what already fits
            if nxt >= too_big:
                nxt = 0.5 * (best[5] + too_big)
        else:
            # Nothing fits yet: always shrink, by at least 3 % (aimed at the fill alone, the scale can
            # approach the one that fits from above forever: 12 equal squares at 512^2 did), and by
            # half once the aim had its tries, so that small enough charts always fit.
            nxt = min(nxt, (0.97 if tries < max_tries else 0.5) * scale)
        scale = nxt
    height, x, y, o, cols, scale = best

    # Place: scale, quarter-turn inside the chart's box of whole columns, move, normalise.
    lu = local[:, 0] * scale
    lv = local[:, 1] * scale
    wc = cols[vchart, 0].astype(np.float64)
    hc = cols[vchart, 1].astype(np.float64)
    ov = o[vchart]
    u = np.select([ov == 0, ov == 1, ov == 2], [lu, hc - lv, wc - lu], default=lv)
    v = np.select([ov == 0, ov == 1, ov == 2], [lv, lu, hc - lv], default=wc - lu)
    u = u + x[vchart] + border
    v = v + y[vchart] + border
    out = np.full((len(uvs), 2), 0.5 / texture_size)  # loose vertices: the first texel's centre
    out[sub] = np.stack([u, v], axis=1) / float(texture_size)
    np.clip(out, 0.0, 1.0, out=out)
    return Packing(uvs=out, texels_per_unit=scale, gap_px=gap, used_height_px=height, tries=tries)


__all__ = ["ChartSet", "Packing", "boundary_edges", "pack_charts", "smallest_rectangles", "uniform_density"]

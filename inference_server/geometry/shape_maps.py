"""2D maps of one silhouette that the weight-free solid is built from (all in map pixels).

- :func:`ball_height2`: the union of the silhouette's inscribed balls, as a height field.
  Every inside pixel ``m`` carries a ball of radius ``phi(m)`` (its distance to the outline);
  ``h^2(p) = max_m (phi(m)^2 - |p - m|^2)`` is the squared half-thickness of their union above
  ``p``. A disk gives exactly a sphere, a strip a round tube of its own width, a ring a torus;
  parts stay joined wherever the silhouette joins them and holes stay open (no ball crosses the
  outline). Outside it is negative (``-2 R d`` at distance ``d`` from a ball of radius ``R``),
  so the map crosses zero on the outline and interpolates well. The max over all pixels is
  separable (``|p - m|^2 = dx^2 + dy^2``): two exact 1D max-plus passes.
- :func:`local_thickness`: the radius of the largest inscribed ball that covers each pixel
  (Hildebrand & Rueegsegger 1997), by thresholding radii at a geometric ladder of levels. It
  tells a thin part (a leg, a handle: small) from the body next to it (large).
- :func:`row_runs`: per row, the horizontal distance to the outline, and the run's half width
  and centre (what one horizontal slice of the object shows), with sub-pixel run ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

CHUNK = 32  # rows per max-plus block: CHUNK x N x N float32 stays a few MB at N = 256
THICKNESS_LEVELS = 28
PLATE_ASPECT = 6.0  # plate_height2: a strip this many times longer (half length) than thick
PART_LEVELS = 10  # thickness levels of part_runs: a factor of about 1.3-1.8 between levels


def _max_plus_rows(f: np.ndarray) -> np.ndarray:
    """g[r, x] = max_m (f[r, m] - (x - m)^2) in float32 blocks, refined between pixels.

    The max over whole-pixel ``m`` misses a ball centred between pixels by up to half a
    pixel; a parabola through the best ``m`` and its two neighbours recovers most of that.
    """
    n = f.shape[1]
    idx = np.arange(n, dtype=np.float32)
    penalty = (idx[:, None] - idx[None, :]) ** 2  # (x, m)
    out = np.empty(f.shape, np.float32)
    for start in range(0, f.shape[0], CHUNK):
        block = f[start:start + CHUNK][:, None, :] - penalty[None]  # (rows, x, m)
        best = block.argmax(axis=2)
        pick = np.take_along_axis
        mid = pick(block, best[..., None], axis=2)[..., 0]
        lo = pick(block, np.maximum(best - 1, 0)[..., None], axis=2)[..., 0]
        hi = pick(block, np.minimum(best + 1, n - 1)[..., None], axis=2)[..., 0]
        with np.errstate(invalid="ignore", over="ignore"):
            curve = 2.0 * mid - lo - hi
            lift = np.where(np.isfinite(curve) & (curve > 1e-6), (hi - lo) ** 2 / (8.0 * np.maximum(curve, 1e-6)), 0.0)
        out[start:start + CHUNK] = mid + np.minimum(lift, 0.5 * np.abs(mid) + 1.0)
    return out


def ball_height2(phi: np.ndarray) -> np.ndarray:
    """Squared half-thickness (map pixels^2) of the union of inscribed balls; see the module doc."""
    return _ball_height2(phi, phi > 0)


def _ball_height2(phi: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared half-thickness of the union of the inscribed balls centred at ``centres``."""
    if not centres.any():
        return np.full(phi.shape, -1.0, np.float32)
    f = np.where(centres, phi.astype(np.float32) ** 2, np.float32(-np.inf)).astype(np.float32)
    g = _max_plus_rows(f)  # along x within each row
    h2 = _max_plus_rows(np.ascontiguousarray(g.T)).T  # then along y
    return np.ascontiguousarray(h2, dtype=np.float32)


def round_height2(phi: np.ndarray, thickness: np.ndarray | None = None) -> np.ndarray:
    """Squared half-thickness of a round solid over the silhouette, map pixels^2.

    Two lower bounds of the union of inscribed balls, whichever is larger: the union itself on
    the pixel grid (:func:`ball_height2`, short by up to a pixel where the best ball is centred
    between pixels), and ``phi * (2 T - phi)`` with ``T`` the local thickness (exact when the
    pixel's nearest outline point is where its covering ball touches the outline: everywhere on
    a disk or a tube, short elsewhere, and short by the thickness ladder's step).
    """
    if thickness is None:
        thickness = fill_outside(local_thickness(phi), phi > 0)
    phi = phi.astype(np.float32)
    return np.maximum(ball_height2(phi), phi * (2.0 * thickness - phi)).astype(np.float32)


def local_thickness(phi: np.ndarray, levels: int = THICKNESS_LEVELS) -> np.ndarray:
    """Radius of the largest inscribed ball covering each inside pixel (0 outside), map pixels."""
    inside = phi > 0
    out = np.where(inside, np.float32(0.5), np.float32(0.0)).astype(np.float32)
    top = float(phi.max())
    if top <= 0.5:
        return out
    for radius in np.geomspace(0.5, top, levels):
        centres = phi >= radius
        if not centres.any():
            break
        covered = ndimage.distance_transform_edt(~centres) <= radius + 1.5  # rim pixels, rasterised outlines
        out[covered & inside] = np.float32(radius)
    return out


@dataclass(frozen=True)
class RowRuns:
    """Per pixel: what its row's run of inside pixels looks like (map pixels, column units)."""

    depth: np.ndarray  # horizontal distance to the run's nearer end; phi (negative) outside
    half_width: np.ndarray  # half the run's length; continued outside from the nearest inside pixel
    centre: np.ndarray  # the run's centre column; continued outside likewise


def row_runs(phi: np.ndarray) -> RowRuns:
    """Horizontal runs of ``phi > 0`` per row, run ends located where ``phi`` crosses zero."""
    inside = phi > 0
    rows, cols = phi.shape
    col = np.broadcast_to(np.arange(cols), phi.shape)
    padded = np.pad(inside, ((0, 0), (1, 1)))
    starts = padded[:, 1:-1] & ~padded[:, :-2]
    ends = padded[:, 1:-1] & ~padded[:, 2:]
    start_col = np.maximum.accumulate(np.where(starts, col, 0), axis=1)
    end_col = np.minimum.accumulate(np.where(ends, col, cols - 1)[:, ::-1], axis=1)[:, ::-1]
    r = np.broadcast_to(np.arange(rows)[:, None], phi.shape)
    p = phi.astype(np.float64)

    def fraction(at: np.ndarray, outward: np.ndarray) -> np.ndarray:
        """How far past pixel ``at`` (towards ``outward``) phi reaches zero, in (0, 1]."""
        valid = (outward >= 0) & (outward < cols)
        inner = p[r, at]
        outer = np.where(valid, p[r, np.clip(outward, 0, cols - 1)], -0.5)
        return np.clip(inner / np.maximum(inner - outer, 1e-9), 0.0, 1.0)

    left = start_col - fraction(start_col, start_col - 1)
    right = end_col + fraction(end_col, end_col + 1)
    depth = np.where(inside, np.minimum(col - left, right - col), p)
    half = np.where(inside, 0.5 * (right - left), 0.0)
    centre = np.where(inside, 0.5 * (right + left), 0.0)
    if inside.any() and not inside.all():
        _, (ri, ci) = ndimage.distance_transform_edt(~inside, return_indices=True)
        half, centre = half[ri, ci], centre[ri, ci]
    return RowRuns(depth=depth.astype(np.float32), half_width=half.astype(np.float32),
                   centre=centre.astype(np.float32))


@dataclass(frozen=True)
class PartRuns(RowRuns):
    """:class:`RowRuns` of each pixel's own part, plus what the rounding needs at a join."""

    junction: np.ndarray  # 1 where the run's nearer end is a join with a thinner part, not the outline
    height2: np.ndarray  # squared half-thickness of the union of the part's own balls (map pixels^2)


def part_runs(phi: np.ndarray, thickness: np.ndarray, ratio: float, levels: int = PART_LEVELS) -> PartRuns:
    """:func:`row_runs` where each pixel's run is that of its own part: the pixels of its row at
    least ``1/ratio`` as thick as it (``thickness``: :func:`local_thickness`, i.e. those covered
    by an inscribed ball of at least that radius).

    Why: where a thin part joins a thick one (a dumbbell's bar, a mug's handle), the row through
    the join is one run in the silhouette, so a ball pixel next to the bar would see its row go
    on to the far ball and stay unrounded (a slab as deep as the ball). With part runs the ball's
    run ends where the bar starts; the bar's pixels still see the whole row. Such a run end is
    no outline, so where it is the nearer end (``junction``) the part's own balls
    (``height2``) say how round the part is there. The thickness is cut into a geometric ladder
    of levels, each with its own runs; a pixel takes the highest level at or below its
    thickness / ratio.
    """
    inside = phi > 0
    base = row_runs(phi)
    zeros = np.zeros(phi.shape, np.float32)
    top = float(thickness[inside].max()) if inside.any() else 0.0
    if top <= ratio * 0.5:
        return PartRuns(base.depth, base.half_width, base.centre, zeros, zeros)
    ladder = np.geomspace(0.5, top / ratio, levels)
    choice = fill_outside(np.searchsorted(ladder, thickness / ratio, side="right") - 1, inside)  # -1: base
    depth, half, centre = base.depth.copy(), base.half_width.copy(), base.centre.copy()
    junction, height2 = zeros.copy(), zeros.copy()
    col = np.broadcast_to(np.arange(phi.shape[1], dtype=np.float32), phi.shape)
    for k, level in enumerate(ladder):
        use = (choice == k) & inside  # such a pixel is at least `level` thick: inside its level's mask
        if not use.any():
            continue
        keep = inside & (thickness >= level)
        runs = row_runs(np.where(keep, phi, np.float32(-0.5)).astype(np.float32))
        # An end of the part's run counts only where it is a join, not a convex corner: the
        # silhouette's row goes on past it by more than the part's radius (a rectangle's corner
        # pixels, covered by smaller balls only, reach less far than that). Elsewhere the
        # silhouette's own run end stays.
        reach = np.float32(level + 1.0)
        base_left, base_right = base.centre - base.half_width, base.centre + base.half_width
        part_left, part_right = runs.centre - runs.half_width, runs.centre + runs.half_width
        join_left, join_right = part_left > base_left + reach, part_right < base_right - reach
        left = np.where(join_left, part_left, base_left)
        right = np.where(join_right, part_right, base_right)
        near_left = col - left <= right - col
        depth[use] = np.minimum(col - left, right - col)[use]
        half[use], centre[use] = (0.5 * (right - left))[use], (0.5 * (right + left))[use]
        joined = use & np.where(near_left, join_left, join_right)
        if joined.any():
            junction[joined] = 1.0
            height2[joined] = _ball_height2(phi, phi >= level)[joined]
    if inside.any() and not inside.all():
        _, (ri, ci) = ndimage.distance_transform_edt(~inside, return_indices=True)
        half, centre = half[ri, ci], centre[ri, ci]
        junction, height2 = junction[ri, ci], height2[ri, ci]
    return PartRuns(depth=depth, half_width=half, centre=centre, junction=junction, height2=height2)


def plate_height2(phi: np.ndarray, thickness: np.ndarray) -> np.ndarray:
    """Squared half-depth (map pixels^2) of the plates the silhouette shows edge-on; 0 elsewhere.

    A long, thin, horizontal strip of even thickness that something stands on or hangs from (a
    table's top over its legs, a lamp's base under its post, a chair's seat) is taken as a plate
    seen edge-on, not a rod: it gets the depth of a disc as wide as the strip (revolved about the
    strip's middle), instead of the tube of its own thickness that the inscribed balls give. A strip
    with nothing attached above or below it (a rod, a pencil) stays a tube, as does a strip that
    joins thicker parts (a dumbbell's bar). Strips from PLATE_ASPECT on (half length / thickness)
    count, fully from twice that.
    """
    inside = phi > 0
    out = np.zeros(phi.shape, np.float32)
    if not inside.any():
        return out
    runs = row_runs(phi)
    run_labels, count = ndimage.label(inside, structure=np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], bool))
    run_max = np.zeros(count + 1, np.float32)
    run_max[1:] = ndimage.maximum(thickness, run_labels, np.arange(1, count + 1))
    t = np.maximum(thickness, 0.5)
    aspect = runs.half_width / t
    strip = inside & (aspect >= PLATE_ASPECT) & (run_max[run_labels] <= 1.5 * t)
    parts, n_parts = ndimage.label(strip)
    if n_parts == 0:
        return out
    col = np.broadcast_to(np.arange(phi.shape[1], dtype=np.float32), phi.shape)
    weight = np.clip(aspect / PLATE_ASPECT - 1.0, 0.0, 1.0)
    lathe = np.maximum(runs.half_width ** 2 - (col - runs.centre) ** 2, 0.0)
    for k in range(1, n_parts + 1):
        part = parts == k
        reach = int(np.ceil(2.0 * float(thickness[part].max()))) + 2
        grown = ndimage.binary_dilation(part, structure=np.ones((2 * reach + 1, 1), bool))
        rows = np.flatnonzero(part.any(axis=1))
        grown[rows[0]:rows[-1] + 1] = False  # its own rows (its rounded ends) are no attachment
        if (grown & inside).any():  # something stands on it or hangs from it
            out[part] = (weight * lathe)[part]
    return out


def column_run_max(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Each inside pixel gets the largest value of its vertical run of inside pixels (0 outside).

    Used on the local thickness: a prism seen from the side (a can, a box) is equally thick at
    its corners as in its middle, although the corner pixels are covered only by small balls.
    """
    labels, count = ndimage.label(inside, structure=np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], bool))
    if count == 0:
        return np.zeros_like(values)
    best = np.zeros(count + 1, np.float32)
    best[1:] = ndimage.maximum(values, labels, np.arange(1, count + 1))
    return best[labels]


def sample_stack(stack: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear lookup of all channels of ``stack`` (H, W, C) at fractional (row, col), clamped.

    One set of weights for every channel: several maps cost little more than one.
    """
    h, w = stack.shape[:2]
    r = np.clip(rows, 0.0, h - 1.0).astype(np.float32)
    c = np.clip(cols, 0.0, w - 1.0).astype(np.float32)
    r0 = np.minimum(r.astype(np.int32), h - 2)
    c0 = np.minimum(c.astype(np.int32), w - 2)
    fr = (r - r0)[:, None]
    fc = (c - c0)[:, None]
    flat = stack.reshape(h * w, -1)
    i = r0 * w + c0
    top = flat[i] * (1 - fc) + flat[i + 1] * fc
    bottom = flat[i + w] * (1 - fc) + flat[i + w + 1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)


def fill_outside(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Continue a map outside ``inside`` with its nearest inside value (so interpolation at the
    outline never mixes in a meaningless outside value)."""
    if not inside.any() or inside.all():
        return values
    _, (ri, ci) = ndimage.distance_transform_edt(~inside, return_indices=True)
    return values[ri, ci]


__all__ = ["column_run_max", "sample_stack", "round_height2", "ball_height2", "local_thickness", "row_runs", "part_runs", "plate_height2", "PartRuns", "RowRuns", "fill_outside"]

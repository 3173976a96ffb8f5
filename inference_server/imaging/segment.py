"""The object's mask in a reference image, with no network.

Two sources, in order of trust:

1. The alpha channel, when the image has one that is not fully opaque. This is
   what Step1X-3D expects (its own pipeline runs a background-removal network
   first; we ask the artist for a cut-out instead when the background is busy).
2. Colour keying against a plain background: a smooth backdrop (a quadratic
   colour ramp, which covers vignetting and light falloff) is fitted to the image
   border, and the background is everything connected to the border whose colour
   stays within a tolerance of that backdrop (a flood fill from the border).
   Regions enclosed by the object are see-through holes (a mug's handle) only when
   they match the backdrop as closely as the border itself does; paint or a label
   merely close to the background colour stays part of the object.

Every failure is a :class:`PipelineError` with code ``bad_image`` and a sentence
an artist can act on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..pipeline.base import PipelineError

ALPHA_THRESHOLD = 128  # alpha >= this is object (a half-covered pixel counts)
OPAQUE = 250  # an alpha channel whose minimum is at least this carries no cut-out
MIN_SIDE = 8  # pixels; smaller images cannot show an object
MIN_OBJECT_PIXELS = 16  # fewer object pixels than this is noise, not an object
# Background keying. Distances are Euclidean in 8-bit RGB.
BUSY_SPREAD = 40.0  # 90th percentile of border distances above this: not a plain background
MIN_TOLERANCE = 24.0  # JPEG noise and soft shadows on a "white" sweep reach about this
MAX_TOLERANCE = 64.0
MAX_BORDER_OBJECT = 0.25  # more of the border than this covered by "object": keying failed
MAX_COVERAGE = 0.97  # an object that fills the whole frame was not separated from anything
MIN_SPECK_FRACTION = 0.002  # keyed islands smaller than this share of the object are noise
# An enclosed region is a hole when its median distance to the backdrop is within the border's
# own noise (90th percentile) plus this margin: the backdrop seen through a handle is the same
# surface as the border, while paint on the object is lit and tinted differently.
HOLE_MARGIN = 6.0
# A part that touches the image border, is detached from the object and is under this share of
# its area is backdrop (a studio sweep's floor line, a table edge, a vignetted corner).
MAX_BORDER_SLIVER = 0.25
# Keyed masks are a guess, and the job stops, when either ring around the outline looks wrong:
# - inside (object pixels 2-3 px in): more than UNCERTAIN_FRACTION within UNCERTAIN_CONTRAST x the
#   keying tolerance of the backdrop (the object's edge fades into it);
# - outside (backdrop pixels 3-12 px out): more than UNCERTAIN_HALO of them off the backdrop by
#   more than its own noise (a pale part of the object was keyed away: what is left is a label).
#   A soft shadow on one side stays under that share.
UNCERTAIN_CONTRAST = 1.5
UNCERTAIN_FRACTION = 0.35
UNCERTAIN_HALO = 0.5

CUTOUT_HINT = "use an image with a transparent background (a PNG cut-out) or a plain, uniform backdrop"


@dataclass(frozen=True)
class ObjectMask:
    mask: np.ndarray  # (H, W) bool, True on the object
    alpha: np.ndarray  # (H, W) uint8 coverage used for compositing (soft edges when known)
    source: str  # "alpha" or "keyed"
    background: tuple[int, int, int] | None = None  # the keyed background colour


def bad_image(message: str) -> PipelineError:
    return PipelineError(message, code="bad_image")


def check_rgba(rgba: np.ndarray) -> np.ndarray:
    """Validate shape and type; accept RGB by adding an opaque alpha."""
    if not isinstance(rgba, np.ndarray) or rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
        raise bad_image("the reference image must be an RGB or RGBA picture")
    if rgba.dtype != np.uint8:
        raise bad_image("the reference image must have 8 bits per channel")
    h, w = rgba.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise bad_image(f"the reference image is {w}x{h} pixels; it must be at least {MIN_SIDE}x{MIN_SIDE}")
    if rgba.shape[2] == 3:
        rgba = np.concatenate([rgba, np.full((h, w, 1), 255, np.uint8)], axis=2)
    return rgba


def has_cutout_alpha(rgba: np.ndarray) -> bool:
    return int(rgba[..., 3].min()) < OPAQUE


def object_mask(rgba: np.ndarray) -> ObjectMask:
    """The object's mask: from alpha when present, else keyed from a plain background."""
    rgba = check_rgba(rgba)
    if has_cutout_alpha(rgba):
        alpha = rgba[..., 3]
        mask = alpha >= ALPHA_THRESHOLD
        if not mask.any():
            raise bad_image("the reference image is fully transparent: there is no object to model")
        mask = drop_border_slivers(mask)
        _check_object(mask, "the image's transparency")
        return ObjectMask(mask=mask, alpha=np.where(mask | (alpha < ALPHA_THRESHOLD), alpha, 0).astype(np.uint8),
                          source="alpha")
    return _key_background(rgba[..., :3])


def _border_pixels(rgb: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]]).astype(np.float32)


def _border_coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the border pixels, in :func:`_border_pixels` order."""
    cols = np.arange(w)
    rows = np.arange(1, h - 1)
    r = np.concatenate([np.zeros(w), np.full(w, h - 1), rows, rows])
    c = np.concatenate([cols, cols, np.zeros(h - 2), np.full(h - 2, w - 1)])
    return r, c


def _quadratic_terms(u: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    return [np.ones_like(u * v), u, v, u * u, u * v, v * v]


def _fit_backdrop(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A smooth backdrop model (quadratic in x and y per channel) fitted to the border.

    Studio backdrops darken towards the corners and phone photos have light
    falloff; a single key colour would need a tolerance wide enough to swallow pale
    objects. Returns the model over the whole image (H, W, 3) and the border's
    distances to it. Two passes: the second ignores border pixels the first could
    not explain (an object touching the edge).
    """
    h, w = rgb.shape[:2]
    border = _border_pixels(rgb)
    r, c = _border_coords(h, w)
    u, v = 2 * c / max(w - 1, 1) - 1, 2 * r / max(h - 1, 1) - 1
    design = np.stack(_quadratic_terms(u, v), axis=1)
    inliers = np.linalg.norm(border - np.median(border, axis=0), axis=1) <= BUSY_SPREAD
    for _ in range(2):
        if inliers.sum() < design.shape[1] * 4:
            break
        coef, *_ = np.linalg.lstsq(design[inliers], border[inliers], rcond=None)
        residual = np.linalg.norm(border - design @ coef, axis=1)
        inliers = residual <= max(3.0 * float(np.median(residual)), 8.0)
    else:
        k = coef.astype(np.float32)
        gu = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
        gv = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None]
        # Same terms as _quadratic_terms, grouped so only three full-size operations remain.
        model = (k[0] + gu * k[1] + gu * gu * k[3]) + (gv * k[2] + gv * gv * k[5]) + (gv * gu) * k[4]
        return model.astype(np.float32, copy=False), residual
    # Too few usable border pixels to fit anything: report them as unexplained.
    flat = np.broadcast_to(np.median(border, axis=0).astype(np.float32), rgb.shape)
    return flat, np.linalg.norm(border - np.median(border, axis=0), axis=1)


def _key_background(rgb: np.ndarray) -> ObjectMask:
    backdrop, border_dist = _fit_backdrop(rgb)
    spread = float(np.percentile(border_dist, 90))
    if spread > BUSY_SPREAD:
        raise bad_image(f"the background is too busy to separate the object from it; {CUTOUT_HINT}")
    # Tolerance follows the measured noise of the backdrop, within sane limits.
    tolerance = float(np.clip(3.0 * spread + 12.0, MIN_TOLERANCE, MAX_TOLERANCE))
    dist = np.linalg.norm(rgb.astype(np.float32) - backdrop, axis=2)
    near_bg = dist <= tolerance
    labels, _ = ndimage.label(near_bg)  # 4-connected: a diagonal gap does not leak into the object
    border_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border_labels = border_labels[border_labels != 0]
    mask = ~np.isin(labels, border_labels)
    mask = _open_see_through_holes(mask, labels, border_labels, dist, spread + HOLE_MARGIN)
    mask = drop_border_slivers(_drop_specks(mask))
    if mask.sum() < MIN_OBJECT_PIXELS:
        raise bad_image("no object could be found: the image looks like a plain background")
    if outline_is_uncertain(mask, dist, tolerance, spread + HOLE_MARGIN):
        raise bad_image(f"the object's outline cannot be told apart from the background reliably; {CUTOUT_HINT}")
    border_mask = _border_pixels(mask[..., None].astype(np.float32))[:, 0]
    if border_mask.mean() > MAX_BORDER_OBJECT or mask.mean() > MAX_COVERAGE:
        raise bad_image(f"the object could not be separated from the background; {CUTOUT_HINT}")
    _check_object(mask, "the background colour")
    # Soft edge: pixels just above the tolerance are partly background.
    soft = np.clip((dist - 0.5 * tolerance) / (0.5 * tolerance), 0.0, 1.0)
    alpha = np.where(mask, np.maximum(soft, ndimage.binary_erosion(mask)), 0.0)
    alpha = np.round(alpha * 255).astype(np.uint8)
    alpha[mask & (alpha < ALPHA_THRESHOLD)] = ALPHA_THRESHOLD  # keep alpha and mask consistent
    bg = tuple(int(round(c)) for c in np.median(_border_pixels(rgb), axis=0))
    return ObjectMask(mask=mask, alpha=alpha, source="keyed", background=bg)  # type: ignore[arg-type]


def _open_see_through_holes(
    mask: np.ndarray, labels: np.ndarray, border_labels: np.ndarray, dist: np.ndarray, hole_tolerance: float
) -> np.ndarray:
    """Give back to the background the enclosed near-backdrop regions that match it within noise."""
    enclosed = np.setdiff1d(np.unique(labels[mask]), np.append(border_labels, 0))
    if enclosed.size == 0:
        return mask
    index = enclosed.astype(np.int64)
    sizes = ndimage.sum_labels(np.ones_like(dist), labels, index)
    medians = ndimage.median(dist, labels, index)
    min_size = max(MIN_OBJECT_PIXELS, MIN_SPECK_FRACTION * float(mask.sum()))
    holes = enclosed[(np.asarray(medians) <= hole_tolerance) & (np.asarray(sizes) >= min_size)]
    if holes.size == 0:
        return mask
    return mask & ~np.isin(labels, holes)


def _drop_specks(mask: np.ndarray) -> np.ndarray:
    """Remove islands that are tiny next to the biggest one (dust, JPEG ringing)."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= max(MIN_OBJECT_PIXELS, MIN_SPECK_FRACTION * sizes.max())
    keep[0] = False
    return keep[labels]


def drop_border_slivers(mask: np.ndarray) -> np.ndarray:
    """Remove parts that touch the image border, are detached from the largest part and are much
    smaller than it: backdrop that keying or a rough cut-out left behind, not the object."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count < 2:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = int(sizes.argmax())
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    drop = [int(k) for k in border if k not in (0, largest) and sizes[k] < MAX_BORDER_SLIVER * sizes[largest]]
    if not drop:
        return mask
    return mask & ~np.isin(labels, drop)


def outline_is_uncertain(mask: np.ndarray, dist: np.ndarray, tolerance: float, noise: float) -> bool:
    """True when the keyed outline is a guess (see UNCERTAIN_*): the object's edge barely differs
    from the fitted backdrop, or the backdrop around it is not the clean backdrop (``dist`` above
    its ``noise`` level), i.e. part of the object was taken for background."""
    inner = ndimage.binary_erosion(mask, iterations=2) & ~ndimage.binary_erosion(mask, iterations=3)
    if inner.sum() >= MIN_OBJECT_PIXELS and float((dist[inner] <= UNCERTAIN_CONTRAST * tolerance).mean()) > UNCERTAIN_FRACTION:
        return True
    halo = ndimage.binary_dilation(mask, iterations=12) & ~ndimage.binary_dilation(mask, iterations=3)
    return bool(halo.sum() >= MIN_OBJECT_PIXELS and float((dist[halo] > noise).mean()) > UNCERTAIN_HALO)


def _check_object(mask: np.ndarray, where: str) -> None:
    count = int(mask.sum())
    if count < MIN_OBJECT_PIXELS:
        raise bad_image(f"the object found from {where} is only {count} pixels; it is too small to model")
    if mask.mean() > MAX_COVERAGE and where != "the image's transparency":
        raise bad_image(f"the object could not be separated from the background; {CUTOUT_HINT}")


__all__ = ["ObjectMask", "object_mask", "check_rgba", "has_cutout_alpha", "drop_border_slivers",
           "outline_is_uncertain", "CUTOUT_HINT"]

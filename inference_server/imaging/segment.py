"""The object's mask in a reference image, with no network.

Two sources, in order of trust:

1. The alpha channel, when the image has one that is not fully opaque. This is
   what Step1X-3D expects (its own pipeline runs a background-removal network
   first; we ask the artist for a cut-out instead when the background is busy).
2. Colour keying against a plain background: the background colour is the
   median of the image border, and the background is everything connected to
   the border whose colour stays within a tolerance of it (a flood fill, so an
   object that contains the background colour inside its outline keeps it).

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
        _check_object(mask, "the image's transparency")
        return ObjectMask(mask=mask, alpha=alpha.copy(), source="alpha")
    return _key_background(rgba[..., :3])


def _border_pixels(rgb: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]]).astype(np.float32)


def _key_background(rgb: np.ndarray) -> ObjectMask:
    border = _border_pixels(rgb)
    background = np.median(border, axis=0)
    border_dist = np.linalg.norm(border - background, axis=1)
    spread = float(np.percentile(border_dist, 90))
    if spread > BUSY_SPREAD:
        raise bad_image(f"the background is too busy to separate the object from it; {CUTOUT_HINT}")
    # Tolerance follows the measured noise of the backdrop, within sane limits.
    tolerance = float(np.clip(3.0 * spread + 12.0, MIN_TOLERANCE, MAX_TOLERANCE))
    dist = np.linalg.norm(rgb.astype(np.float32) - background, axis=2)
    near_bg = dist <= tolerance
    labels, _ = ndimage.label(near_bg)  # 4-connected: a diagonal gap does not leak into the object
    border_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border_labels = border_labels[border_labels != 0]
    mask = ~np.isin(labels, border_labels)
    mask = _drop_specks(mask)
    if mask.sum() < MIN_OBJECT_PIXELS:
        raise bad_image("no object could be found: the image looks like a plain background")
    border_mask = _border_pixels(mask[..., None].astype(np.float32))[:, 0]
    if border_mask.mean() > MAX_BORDER_OBJECT or mask.mean() > MAX_COVERAGE:
        raise bad_image(f"the object could not be separated from the background; {CUTOUT_HINT}")
    _check_object(mask, "the background colour")
    # Soft edge: pixels just above the tolerance are partly background.
    soft = np.clip((dist - 0.5 * tolerance) / (0.5 * tolerance), 0.0, 1.0)
    alpha = np.where(mask, np.maximum(soft, ndimage.binary_erosion(mask)), 0.0)
    alpha = np.round(alpha * 255).astype(np.uint8)
    alpha[mask & (alpha < ALPHA_THRESHOLD)] = ALPHA_THRESHOLD  # keep alpha and mask consistent
    bg = tuple(int(round(c)) for c in background)
    return ObjectMask(mask=mask, alpha=alpha, source="keyed", background=bg)  # type: ignore[arg-type]


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


def _check_object(mask: np.ndarray, where: str) -> None:
    count = int(mask.sum())
    if count < MIN_OBJECT_PIXELS:
        raise bad_image(f"the object found from {where} is only {count} pixels; it is too small to model")
    if mask.mean() > MAX_COVERAGE and where != "the image's transparency":
        raise bad_image(f"the object could not be separated from the background; {CUTOUT_HINT}")


__all__ = ["ObjectMask", "object_mask", "check_rgba", "has_cutout_alpha", "CUTOUT_HINT"]

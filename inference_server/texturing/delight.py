"""Simple de-lighting of reference images, and what stands in for a back view nobody gave.

De-lighting (``delight``). A reference photo or render carries its lighting: a ball is darker
towards its rim and has a white specular spot. Painting that into the base colour doubles the
lighting in any renderer. We know the mesh, so the shading can be told apart from paint:

1. Shading. Render the mesh's normals from the reference's camera; ``c = n . v`` (facing ratio)
   per pixel. Fit luminance as ``L = a + b c`` over the object by least squares. A painted
   pattern is uncorrelated with ``c`` (``b`` about 0: nothing changes); lighting from the
   camera's side makes ``b`` large; the fit must explain MIN_EXPLAINED of the variance. Each
   pixel is then scaled by ``fit(mean c) / fit(c)`` (clipped to [1/MAX_GAIN, MAX_GAIN]), which
   removes the rim darkening and keeps the colours.
2. Highlights. Near-white pixels brighter than ``HIGHLIGHT`` x the fit and much less saturated
   than the object typically is are a specular highlight, not paint: they take the colour of
   their surroundings (a masked blur). Looked for only when step 1 found shading: without
   evidence of lighting a bright spot is paint.

What stands in for the back (``back_stand_in``), when there is no back view: the mirrored front
only when the silhouette is left/right symmetric (IoU with its mirror image >= SYMMETRY_IOU),
and then blurred (``SYMMETRIC_BLUR``) so the front's features (eyes, a label) are not painted on
the back; otherwise the object's dominant colours at low frequency (a much stronger blur). The
``mirror_front_detail`` setting asks for the unblurred mirrored front instead.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MAX_GAIN = 1.6
HIGHLIGHT = 1.25
HIGHLIGHT_MIN = 0.6  # highlights are near white: darker bright spots are paint
MIN_EXPLAINED = 0.3  # the facing ratio must explain this share of the luminance variance to count as shading
SYMMETRY_IOU = 0.9
SYMMETRIC_BLUR = 0.1  # Gaussian sigma, share of the canvas: eyes and labels fade, the layout stays
ASYMMETRIC_BLUR = 0.25  # dominant colours only
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def masked_blur(rgb: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``rgb`` (H, W, 3 float) over ``mask`` only (normalised convolution).

    Wide blurs run on a reduced image (a blur of sigma s loses nothing at s / 4 pixels per
    sample) and are scaled back up: the stand-in back's 100-pixel blur costs milliseconds.
    """
    step = max(1, int(sigma // 4))
    small_rgb = rgb[::step, ::step].astype(np.float32)
    small_mask = mask[::step, ::step].astype(np.float32)
    weight = ndimage.gaussian_filter(small_mask, sigma / step)
    out = np.empty(small_rgb.shape, np.float32)
    for ch in range(3):
        out[..., ch] = ndimage.gaussian_filter(small_rgb[..., ch] * small_mask, sigma / step) / np.maximum(weight, 1e-6)
    if step == 1:
        return out
    zoom = (rgb.shape[0] / out.shape[0], rgb.shape[1] / out.shape[1], 1)
    return np.asarray(ndimage.zoom(out, zoom, order=1, mode="nearest"), np.float32)[: rgb.shape[0], : rgb.shape[1]]


def delight(rgb: np.ndarray, mask: np.ndarray, facing: np.ndarray | None) -> np.ndarray:
    """De-lit copy of ``rgb`` (H, W, 3 float in [0, 1]); ``facing`` is ``n . v`` per pixel
    (NaN where the mesh does not cover the pixel) or None to skip the shading step."""
    out = np.asarray(rgb, np.float32).copy()
    luma = out @ _LUMA
    fit = np.full(luma.shape, float(np.median(luma[mask])) if mask.any() else 1.0, np.float32)
    lit = False
    if facing is not None:
        use = mask & np.isfinite(facing)
        if use.sum() > 64:
            c = facing[use]
            design = np.stack([np.ones_like(c), c], axis=1)
            (a, b), *_ = np.linalg.lstsq(design, luma[use], rcond=None)
            residual = luma[use] - (a + b * c)
            explained = 1.0 - float(residual.var()) / max(float(luma[use].var()), 1e-9)
            if b > 0 and a + b * float(c.min()) > 0 and explained >= MIN_EXPLAINED:
                c_all = np.where(np.isfinite(facing), facing, float(c.mean()))
                fit = (a + b * c_all).astype(np.float32)
                gain = np.clip((a + b * float(c.mean())) / np.maximum(fit, 1e-3), 1.0 / MAX_GAIN, MAX_GAIN)
                out = np.where(mask[..., None], out * gain[..., None], out)
                fit = fit * gain
                lit = True
    if not lit:
        return np.clip(out, 0.0, 1.0)  # no evidence of lighting: bright spots are paint
    sigma = max(2.0, 0.02 * rgb.shape[0])
    saturation = out.max(axis=2) - out.min(axis=2)
    typical_sat = float(np.median(saturation[mask])) if mask.any() else 0.0
    bright = out @ _LUMA
    highlight = mask & (bright > HIGHLIGHT * fit) & (bright > HIGHLIGHT_MIN) & (saturation < 0.5 * typical_sat)
    if highlight.any():
        grown = ndimage.binary_dilation(highlight, iterations=2) & mask
        surround = masked_blur(out, mask & ~grown, 3.0 * sigma)
        out[grown] = surround[grown]
    return np.clip(out, 0.0, 1.0)


def facing_ratio(positions: np.ndarray, faces: np.ndarray, normals: np.ndarray | None, view_proj: np.ndarray,
                 view_dir: np.ndarray, size: int) -> np.ndarray:
    """``n . v`` of the mesh seen through ``view_proj`` on a size^2 image; NaN off the mesh."""
    from inference_server import kernels as K

    from ..export.meshprep import vertex_normals

    n = normals if normals is not None else vertex_normals(positions, faces)
    raster = K.rasterize(positions, faces, view_proj, size, size)
    interp = np.asarray(K.interpolate(raster, faces, np.asarray(n, np.float32)), np.float32)
    length = np.linalg.norm(interp, axis=-1)
    facing = (interp @ np.asarray(view_dir, np.float32)) / np.maximum(length, 1e-6)
    return np.where(np.asarray(raster.face_id) >= 0, np.clip(facing, 0.0, 1.0), np.nan).astype(np.float32)


def is_symmetric(mask: np.ndarray) -> bool:
    mirrored = mask[:, ::-1]
    union = np.logical_or(mask, mirrored).sum()
    return bool(union and np.logical_and(mask, mirrored).sum() / union >= SYMMETRY_IOU)


def back_stand_in(rgb: np.ndarray, mask: np.ndarray, mirror_detail: bool) -> tuple[np.ndarray, str]:
    """The image that stands in for a missing back view (mirrored), and how it was made."""
    mirrored_rgb = np.ascontiguousarray(rgb[:, ::-1])
    mirrored_mask = np.ascontiguousarray(mask[:, ::-1])
    if mirror_detail:
        return mirrored_rgb, "mirrored front"
    if is_symmetric(mask):
        return masked_blur(mirrored_rgb, mirrored_mask, SYMMETRIC_BLUR * mask.shape[0]), "mirrored front, blurred"
    return masked_blur(mirrored_rgb, mirrored_mask, ASYMMETRIC_BLUR * mask.shape[0]), "dominant colours"


__all__ = ["delight", "facing_ratio", "back_stand_in", "is_symmetric", "masked_blur"]

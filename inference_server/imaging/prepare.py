"""Reference image -> square, centred, object-filling canvas (Step1X-3D's step 1).

The object is cut out (see :mod:`.segment`), cropped to its bounding box,
scaled so its longer side covers ``fill`` of the canvas, composited over
``background`` and centred on a square canvas. The geometry backends read the
silhouette from ``mask``; the texture stage reads colour from ``rgba``.

Pixel -> source mapping, for anyone projecting back onto the original image:
``source_xy = crop_box[:2] + (canvas_xy + 0.5 - offset) / scale - 0.5`` (exact for
sources up to ``2 * size`` pixels; larger ones are first reduced to that, and the
mapping holds to about one reduction step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .segment import ALPHA_THRESHOLD, bad_image, object_mask

MIN_CANVAS = 16


@dataclass(frozen=True)
class PreparedImage:
    rgba: np.ndarray  # (size, size, 4) uint8: object over `background`, alpha = object coverage
    mask: np.ndarray  # (size, size) bool: the object's silhouette
    crop_box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in the source image, x1/y1 exclusive
    scale: float  # canvas pixels per source pixel
    offset: tuple[int, int]  # (x, y) of the crop's top-left corner on the canvas
    source_size: tuple[int, int]  # (width, height) of the source image
    mask_source: str  # "alpha" (from transparency) or "keyed" (from a plain background)

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])


def prepare_reference(
    rgba: np.ndarray,
    *,
    size: int = 1024,
    fill: float = 0.95,
    background: tuple[int, int, int] = (255, 255, 255),
) -> PreparedImage:
    """Cut out, crop, recentre and scale one reference image (see the module docstring).

    Raises ``PipelineError(code="bad_image")`` for images that cannot give a silhouette.
    """
    if size < MIN_CANVAS:
        raise ValueError(f"size must be at least {MIN_CANVAS}")
    if not 0.0 < fill <= 1.0:
        raise ValueError("fill must be in (0, 1]")
    source_size = _source_size(rgba)
    rgba, reduction = _reduce(rgba, 2 * size)
    found = object_mask(rgba)
    if rgba.shape[2] == 3:
        rgba = np.concatenate([rgba, found.alpha[..., None]], axis=2)
    ys, xs = np.nonzero(found.mask)
    x0, x1 = int(xs.min()), int(xs.max()) + 1
    y0, y1 = int(ys.min()), int(ys.max()) + 1
    crop_w, crop_h = x1 - x0, y1 - y0
    if max(crop_w, crop_h) < 2:
        raise bad_image("the object in the reference image is a single pixel; it is too small to model")
    scale = fill * size / max(crop_w, crop_h)
    out_w = max(1, min(size, int(round(crop_w * scale))))
    out_h = max(1, min(size, int(round(crop_h * scale))))

    # Composite before resampling so colour never bleeds in from hidden (transparent) pixels.
    alpha = found.alpha[y0:y1, x0:x1].astype(np.float32) / 255.0
    rgb: np.ndarray = rgba[y0:y1, x0:x1, :3].astype(np.float32)
    bg = np.asarray(background, np.float32)
    rgb = rgb * alpha[..., None] + bg * (1.0 - alpha[..., None])
    resample = Image.Resampling.LANCZOS if scale < 1.0 else Image.Resampling.BICUBIC
    rgb_img = Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), "RGB").resize((out_w, out_h), resample)
    alpha_img = Image.fromarray(found.alpha[y0:y1, x0:x1], "L").resize((out_w, out_h), resample)

    canvas = np.empty((size, size, 4), np.uint8)
    canvas[..., :3] = np.asarray(background, np.uint8)
    canvas[..., 3] = 0
    ox, oy = (size - out_w) // 2, (size - out_h) // 2
    canvas[oy : oy + out_h, ox : ox + out_w, :3] = np.asarray(rgb_img)
    canvas[oy : oy + out_h, ox : ox + out_w, 3] = np.asarray(alpha_img)
    mask = canvas[..., 3] >= ALPHA_THRESHOLD
    if not mask.any():
        raise bad_image("the object in the reference image is too thin to keep after scaling")
    return PreparedImage(
        rgba=canvas,
        mask=mask,
        crop_box=(
            int(np.floor(x0 / reduction)), int(np.floor(y0 / reduction)),
            int(np.ceil(x1 / reduction)), int(np.ceil(y1 / reduction)),
        ),
        scale=float(scale * reduction),
        offset=(ox, oy),
        source_size=source_size,
        mask_source=found.source,
    )


def _source_size(rgba: np.ndarray) -> tuple[int, int]:
    shape: tuple[int, ...] = tuple(getattr(rgba, "shape", ()))
    return (int(shape[1]), int(shape[0])) if len(shape) >= 2 else (0, 0)


def _reduce(rgba: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink sources much larger than the canvas before segmenting them.

    The canvas never needs more than this, and keying a 12-megapixel photo at full
    size takes seconds. Area averaging (PIL's BOX filter, alpha-premultiplied for
    RGBA) keeps edges anti-aliased. Returns the image and the factor applied.
    """
    if not isinstance(rgba, np.ndarray) or rgba.ndim != 3 or rgba.dtype != np.uint8 or rgba.shape[2] not in (3, 4):
        return rgba, 1.0  # let the segmenter report what is wrong with it
    h, w = rgba.shape[:2]
    if max(h, w) <= max_side:
        return rgba, 1.0
    factor = max_side / max(h, w)
    size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    mode = "RGBA" if rgba.shape[2] == 4 else "RGB"
    small = np.asarray(Image.fromarray(np.ascontiguousarray(rgba), mode).resize(size, Image.Resampling.BOX))
    return small, size[0] / w


__all__ = ["PreparedImage", "prepare_reference"]

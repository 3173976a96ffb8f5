"""Reference image -> the square, white-backed RGB image the condition encoders see (upstream step 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

ImageInput = Union[str, Path, Image.Image, np.ndarray]
MAX_CANVAS = 2048  # the encoders resize to 518/224 anyway; bigger canvases only cost time
MIN_CANVAS = 64


def to_rgba(image: ImageInput) -> np.ndarray:
    """A path, PIL image or array -> ``(H, W, 4)`` uint8 (an opaque alpha when the source has none)."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as img:
            return to_rgba(img.copy())
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGBA"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr * 255.0 if arr.max() <= 1.0 else arr), 0, 255).astype(np.uint8)
    if arr.shape[2] == 3:
        arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return arr


def condition_image(
    image: ImageInput, foreground_ratio: float = 0.95, background: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """Cut out, crop, scale the object to ``foreground_ratio`` of a square canvas, composite on white.

    The canvas is as large as the source's longer side (upstream keeps the source size), so the
    encoders' own bicubic resize to 518 / 224 sees the same kind of input as upstream's.
    """
    from ...imaging.prepare import prepare_reference

    rgba = to_rgba(image)
    size = int(min(MAX_CANVAS, max(MIN_CANVAS, max(rgba.shape[:2]))))
    prepared = prepare_reference(rgba, size=size, fill=foreground_ratio, background=background)
    # The canvas is already composited over `background` and keeps the coverage as alpha, like
    # upstream's preprocess_image. Upstream's HF image processors (transformers >= 4.40) then
    # composite that RGBA over white once more, which lightens the anti-aliased rim: do the same.
    canvas = Image.fromarray(np.ascontiguousarray(prepared.rgba), "RGBA")
    white = Image.new("RGBA", canvas.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, canvas).convert("RGB")

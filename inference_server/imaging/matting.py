"""Learned background removal: a salient-object / matting network as ONNX (``--matting-model``).

Any of the networks distributed for rembg works (U2-Net, IS-Net, BiRefNet): one RGB input
normalised with ImageNet's mean and std at the model's own input size, one mask output
(``[1, 1, h, w]``, ``[1, h, w]`` or ``[h, w]``; logits or probabilities). As rembg does, logits
go through a sigmoid, the mask is stretched to [0, 1] (min-max) and resized back to the image.

It runs only on images without a cut-out (no alpha, or an opaque one); its mask becomes the
alpha channel and everything downstream takes the alpha path. When it finds nothing (a flat
mask) or everything, the image is left as it was and colour keying (:mod:`.segment`) decides,
as it does with no model configured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .onnx_image import OnnxImageModel, sigmoid
from .segment import ALPHA_THRESHOLD, MAX_COVERAGE, MIN_OBJECT_PIXELS, has_cutout_alpha

MIN_CONTRAST = 1e-3  # a mask whose values span less than this found no object


class MattingModel:
    def __init__(self, path: str | Path, device: str | None = None) -> None:
        self.model = OnnxImageModel(path, "matting", device)
        if len(self.model.session.get_outputs()) < 1:
            raise ValueError(f"the matting model {self.model.path} has no output")

    def alpha(self, rgb: np.ndarray) -> np.ndarray | None:
        """(H, W, 3|4) uint8 -> (H, W) uint8 alpha, or None when the model found no object."""
        out = self.model(rgb)[0].astype(np.float32)
        mask = out.reshape(out.shape[-2:]) if out.ndim >= 2 and int(np.prod(out.shape[:-2])) == 1 else None
        if mask is None:
            raise ValueError(f"the matting model {self.model.path.name} must output one mask, got shape {out.shape}")
        if mask.min() < 0.0 or mask.max() > 1.0:
            mask = sigmoid(mask)
        lo, hi = float(mask.min()), float(mask.max())
        if hi - lo < MIN_CONTRAST:
            return None
        mask = (mask - lo) / (hi - lo)
        small = Image.fromarray(np.round(mask * 255.0).astype(np.uint8), "L")
        h, w = rgb.shape[:2]
        return np.asarray(small.resize((w, h), Image.Resampling.LANCZOS))

    def cut_out(self, rgba: np.ndarray) -> np.ndarray:
        """The image with the model's mask as its alpha, when it has no cut-out of its own and the
        model separates something; otherwise the image unchanged (keying will try)."""
        image = np.asarray(rgba)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            return image  # the segmenter reports what is wrong with it
        if image.shape[2] == 4 and has_cutout_alpha(image):
            return image
        alpha = self.alpha(image)
        if alpha is None:
            return image
        solid = alpha >= ALPHA_THRESHOLD
        if int(solid.sum()) < MIN_OBJECT_PIXELS or solid.mean() > MAX_COVERAGE:
            return image
        return np.concatenate([image[..., :3], alpha[..., None]], axis=2)


__all__ = ["MattingModel"]

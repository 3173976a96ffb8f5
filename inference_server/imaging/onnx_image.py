"""One ONNX image model run with onnxruntime: the session, its input size, ImageNet normalisation.

Shared by the learned cut-out (:mod:`.matting`) and the content filter (:mod:`.content_filter`):
both take one RGB image tensor ``[1, 3, H, W]`` normalised with ImageNet's mean and std at the
model's own input size (the convention of U2-Net, IS-Net, BiRefNet as exported for rembg, and of
torchvision classifiers). ``onnxruntime`` is the ``assets`` extra, imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..pipeline.base import PipelineError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
DEFAULT_SIZE = 1024  # for models whose input size is dynamic (BiRefNet's own resolution)


class OnnxImageModel:
    """``model(rgb (H, W, 3) uint8) -> list of output arrays``; raises ``ValueError`` with one
    sentence for a file that is not a usable single-image model."""

    def __init__(self, path: str | Path, what: str, device: str | None = None) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise ValueError(f"{what} model not found: {self.path}")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ValueError(f"the {what} model needs onnxruntime: pip install 'step1x3d[assets]'") from None
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session: Any = ort.InferenceSession(str(self.path), providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for bad files
            raise ValueError(f"cannot load the {what} model {self.path}: {' '.join(str(exc).split())[:200]}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"the {what} model {self.path} must take one image tensor [1, 3, H, W]")
        self.input_name: str = inputs[0].name
        h, w = inputs[0].shape[2], inputs[0].shape[3]
        # Dynamic axes (names or None) take the default size.
        self.size = (int(w) if isinstance(w, int) and w > 0 else DEFAULT_SIZE,
                     int(h) if isinstance(h, int) and h > 0 else DEFAULT_SIZE)
        self.providers: list[str] = list(self.session.get_providers())

    def tensor(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> [1, 3, h, w] float32 at the model's size, ImageNet-normalised."""
        resized = Image.fromarray(np.ascontiguousarray(rgb[..., :3]), "RGB").resize(self.size, Image.Resampling.BILINEAR)
        x = (np.asarray(resized, np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def __call__(self, rgb: np.ndarray) -> list[np.ndarray]:
        try:
            return [np.asarray(o) for o in self.session.run(None, {self.input_name: self.tensor(rgb)})]
        except Exception as exc:  # noqa: BLE001
            raise PipelineError(f"the image model {self.path.name} failed: {' '.join(str(exc).split())[:200]}",
                                code="internal_error") from exc


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))).astype(np.float32)


__all__ = ["DEFAULT_SIZE", "IMAGENET_MEAN", "IMAGENET_STD", "OnnxImageModel", "sigmoid"]

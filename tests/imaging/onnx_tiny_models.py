"""Tiny ONNX image models with the signatures of the real ones, built with onnx.helper.

Both read one ImageNet-normalised RGB tensor ``[1, 3, S, S]``. Their decisions hang on the red
channel *after* normalisation, ``(R / 255 - 0.485) / 0.229``, against the value a red level of
``RED_LEVEL`` gives: a model fed un-normalised pixels would decide at a red level near 31.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RED_LEVEL = 128.0
RED_CUT = (RED_LEVEL / 255.0 - 0.485) / 0.229
GAIN = 50.0


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _input(size: int | None) -> onnx.ValueInfoProto:
    dims: list[int | str] = [1, 3, size, size] if size else [1, 3, "height", "width"]
    return helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)


def matting_model(path: Path, size: int | None = 64, *, probabilities: bool = False, squeeze: bool = False,
                  gain: float = GAIN) -> Path:
    """Salient-object stand-in: mask = GAIN * (normalised red - RED_CUT), as logits (BiRefNet-style)
    or through a sigmoid (U2-Net-style); output [1, 1, S, S], or [1, S, S] with ``squeeze``."""
    weight = np.zeros((1, 3, 1, 1), np.float32)
    weight[0, 0] = gain
    bias = np.array([-gain * RED_CUT], np.float32)
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["logits"])]
    last = "logits"
    if probabilities:
        nodes.append(helper.make_node("Sigmoid", [last], ["prob"]))
        last = "prob"
    if squeeze:
        nodes.append(helper.make_node("Squeeze", [last, "axes"], ["mask"]))
    else:
        nodes.append(helper.make_node("Identity", [last], ["mask"]))
    out_dims: list[int | str] = [1, size or "height", size or "width"] if squeeze else [1, 1, size or "height", size or "width"]
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    graph = helper.make_graph(nodes, "tiny_matting", [_input(size)],
                              [helper.make_tensor_value_info("mask", TensorProto.FLOAT, out_dims)], inits)
    return _save(graph, path)


def classifier_model(path: Path, size: int = 32, *, probabilities: bool = False) -> Path:
    """Content-classifier stand-in with two classes: [neutral, red]. The "red" logit is
    GAIN * (mean normalised red - RED_CUT), "neutral" is 0 (softmax output with ``probabilities``)."""
    weight = np.array([[0.0, 0.0, 0.0], [GAIN, 0.0, 0.0]], np.float32).T  # (3, 2) for Gemm
    bias = np.array([0.0, -GAIN * RED_CUT], np.float32)
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "w", "b"], ["logits"])]
    last = "logits"
    if probabilities:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
        last = "probs"
    nodes.append(helper.make_node("Identity", [last], ["scores"]))
    graph = helper.make_graph(nodes, "tiny_classifier", [_input(size)],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2])],
                              [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    return _save(graph, path)


def busy_photo(h: int = 96, w: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(RGB photo, object mask): a red-dominant ellipse on a busy background whose red stays
    below 100, both textured with noise in green and blue. Colour keying refuses it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((xx - w / 2) / (w * 0.3)) ** 2 + ((yy - h / 2) / (h * 0.35)) ** 2 <= 1.0
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[..., 0] = rng.integers(0, 100, (h, w), dtype=np.uint8)
    img[inside, 0] = rng.integers(200, 256, int(inside.sum()), dtype=np.uint8)
    return img, inside

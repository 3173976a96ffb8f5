"""The content filter (``serve --content-filter MODEL.onnx --content-filter-labels FILE``).

An ONNX image classifier (one RGB input, ImageNet-normalised at its own input size; one output
of class scores ``[1, C]``, logits or probabilities), a labels file naming its classes and which
of them are refused, and a threshold. A job is refused when, for any of its images, a refused
class reaches the threshold.

Labels file: one line per output class, in the model's order, ``allow NAME`` or ``refuse NAME``;
blank lines and ``#`` comments are ignored. For example::

    allow neutral
    allow drawing
    refuse explicit
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .onnx_image import OnnxImageModel

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Refusal:
    label: str
    score: float
    image_index: int


def read_labels(path: str | Path) -> list[tuple[str, bool]]:
    """``[(name, refused), ...]`` in the model's output order; ValueError naming the bad line."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the content filter labels {path}: {exc.strerror or exc}") from None
    labels: list[tuple[str, bool]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        verb, _, name = line.partition(" ")
        if verb not in ("allow", "refuse") or not name.strip():
            raise ValueError(f"{path} line {number}: write 'allow NAME' or 'refuse NAME', one per model output")
        labels.append((name.strip(), verb == "refuse"))
    if not any(refused for _, refused in labels):
        raise ValueError(f"{path} refuses no label; mark at least one line 'refuse NAME'")
    return labels


class ContentFilter:
    def __init__(self, model: str | Path, labels: str | Path, threshold: float = DEFAULT_THRESHOLD,
                 device: str | None = None) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"the content filter threshold must be in (0, 1], not {threshold}")
        self.labels = read_labels(labels)
        self.threshold = float(threshold)
        self.model = OnnxImageModel(model, "content filter", device)
        outputs = self.model.session.get_outputs()
        count = outputs[0].shape[-1] if outputs and outputs[0].shape else None
        if isinstance(count, int) and count != len(self.labels):
            raise ValueError(f"the content filter model has {count} classes but {labels} names {len(self.labels)}")

    def scores(self, rgb: np.ndarray) -> np.ndarray:
        """Class probabilities of one image (softmax of the output unless it already is one)."""
        out = self.model(rgb)[0].astype(np.float64).reshape(-1)
        if out.shape[0] != len(self.labels):
            raise ValueError(f"the content filter model gave {out.shape[0]} scores for {len(self.labels)} labels")
        is_probability = out.min() >= 0.0 and abs(float(out.sum()) - 1.0) < 1e-3
        if not is_probability:
            e = np.exp(out - out.max())
            out = e / e.sum()
        return out

    def check(self, images: Sequence[np.ndarray]) -> Refusal | None:
        """The first refused class found (highest score of its image), or None when all pass."""
        for index, image in enumerate(images):
            probs = self.scores(np.asarray(image)[..., :3])
            refused = [(float(p), name) for p, (name, bad) in zip(probs, self.labels) if bad and p >= self.threshold]
            if refused:
                score, name = max(refused)
                return Refusal(label=name, score=score, image_index=index)
        return None


__all__ = ["DEFAULT_THRESHOLD", "ContentFilter", "Refusal", "read_labels"]

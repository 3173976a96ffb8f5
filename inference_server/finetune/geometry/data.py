"""A prepared geometry set (``finetune prepare``'s output) and the per-sample draws of a step.

Each object is read lazily from its ``.npz`` (a full-size object's condition tokens are tens of
MB, so a set is never held in memory at once). :func:`draw_sample` makes every random choice of
one sample of one step from that sample's own generator (see ``finetune.seeding``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..prepcache import PrepError, read_manifest
from ..seeding import sample_generator


class PreparedSet:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest = read_manifest(folder)
        self.params: dict[str, Any] = dict(self.manifest.get("params", {}))
        self.objects: list[dict[str, Any]] = list(self.manifest["objects"])
        for obj in self.objects:
            if not (folder / obj["file"]).is_file():
                raise PrepError(f"{folder / obj['file']} is missing; run 'step1x3d finetune prepare' again")

    def __len__(self) -> int:
        return len(self.objects)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(moments (num_latents, 2 * embed_dim) float32, visual tokens (views, tokens, dim))."""
        path = self.folder / self.objects[index]["file"]
        with np.load(path) as data:
            return np.asarray(data["moments"], np.float32), np.asarray(data["visual"])

    def summary(self) -> dict[str, Any]:
        return {"objects": len(self), "sources": [o["source"] for o in self.objects],
                "points": self.params.get("points"), "views": self.params.get("views"),
                "model": self.params.get("model")}


@dataclass
class SampleDraw:
    z: torch.Tensor  # (num_latents, embed_dim) the clean latent
    eps: torch.Tensor  # same shape, the noise
    normal: torch.Tensor  # () standard normal for the logit-normal timestep
    dropped: bool  # condition replaced by the zero embedding
    visual: torch.Tensor  # (tokens, dim) float32


def draw_sample(moments: np.ndarray, visual: np.ndarray, *, seed: int, step: int, index: int, dropout: float,
                sample_posterior: bool, z_scale_factor: float, stream: int = 0) -> SampleDraw:
    """Every random choice of sample ``index`` at ``step`` (``stream`` 1: the held-out evaluation draws)."""
    g = sample_generator(seed, step, index, stream)
    m = torch.from_numpy(moments)
    mean, logvar = m.chunk(2, dim=-1)
    posterior = torch.randn(mean.shape, generator=g)
    eps = torch.randn(mean.shape, generator=g)
    normal = torch.randn((), generator=g)
    dropped = bool(torch.rand((), generator=g).item() < dropout)
    view = int(torch.randint(visual.shape[0], (), generator=g).item())
    z = mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * posterior if sample_posterior else mean
    tokens = torch.from_numpy(visual[view].astype(np.float32))
    return SampleDraw(z * z_scale_factor, eps, normal, dropped, tokens)

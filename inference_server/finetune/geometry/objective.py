"""The rectified-flow training objective, as upstream's ``shape_rectified_flow`` system trains it.

* timesteps: ``u = sigmoid(N(logit_mean, logit_std))`` (logit-normal, mean 0, std 1), index
  ``floor(u * num_train_timesteps)`` into the training scheduler's own ``timesteps`` and
  ``sigmas`` (a fresh ``FlowMatchEulerDiscreteScheduler``: 1000 .. 1 and 1.0 .. 0.001 with
  shift 1); the transformer sees the integer timestep;
* ``x_t = (1 - sigma) z + sigma eps``; the network predicts ``v = eps - z``;
* loss: MSE. Upstream's default ``precondition_outputs=True`` compares ``x_t - sigma v`` with
  ``z`` (that is ``sigma^2 |v - (eps - z)|^2``); with it off, ``v`` is compared with
  ``eps - z`` directly. The logit-normal scheme's loss weighting is 1.
* condition dropout: with probability ``condition_dropout`` (upstream ``empty_embeds_ratio``
  0.1) the image tokens are replaced by the zero embedding, the unconditional input of CFG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class FlowTable:
    """The training scheduler's timesteps and sigmas (index 0 = pure noise)."""

    timesteps: torch.Tensor  # (N,) float32
    sigmas: torch.Tensor  # (N,) float32

    @classmethod
    def from_scheduler(cls, scheduler: Any) -> "FlowTable":
        n = int(scheduler.config.num_train_timesteps)
        timesteps = torch.as_tensor(scheduler.timesteps, dtype=torch.float32)[:n]
        sigmas = torch.as_tensor(scheduler.sigmas, dtype=torch.float32)[:n]
        if len(timesteps) != n or len(sigmas) != n:
            raise ValueError("the training scheduler must not have been set up for inference (set_timesteps)")
        return cls(timesteps, sigmas)

    def lookup(self, normal: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard-normal draws -> (timesteps as the model sees them, sigmas)."""
        u = torch.sigmoid(mean + std * normal)
        n = len(self.timesteps)
        index = (u * n).long().clamp_(0, n - 1)
        return self.timesteps[index].long().float(), self.sigmas[index]


def noisy_latents(z: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = sigma.view(-1, *([1] * (z.ndim - 1)))
    return (1.0 - s) * z + s * eps


def flow_loss(v: torch.Tensor, z: torch.Tensor, eps: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor,
              precondition_outputs: bool = True) -> torch.Tensor:
    """Per-sample MSE, shape (B,)."""
    if precondition_outputs:
        s = sigma.view(-1, *([1] * (z.ndim - 1)))
        prediction, target = x_t - s * v.float(), z
    else:
        prediction, target = v.float(), eps - z
    return (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)

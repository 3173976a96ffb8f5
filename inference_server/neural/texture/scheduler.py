"""Shifted-SNR DDPM scheduler of the Step1X-3D texture model.

The multi-view model was trained with SDXL's noise schedule re-derived after dividing the
signal-to-noise ratio by ``shift_scale ** (t / (T - 1))`` ("interpolated" shift, scale 8):
at t = 0 the schedule is SDXL's, at t = T - 1 the SNR is 8 times lower. Six views at 768^2
hold more signal than one image, so the model needs noisier high timesteps to start from
something close to pure noise. Sampling must use the same betas.

Closed form, with abar the cumulative product of SDXL's alphas:
    snr(t)    = abar(t) / (1 - abar(t))
    snr'(t)   = snr(t) * shift_scale ** (-t / (T - 1))
    abar'(t)  = snr'(t) / (1 + snr'(t))
    beta'(t)  = 1 - abar'(t) / abar'(t - 1),   abar'(-1) = 1
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from diffusers import DDPMScheduler

SHIFT_SCALE = 8.0


def shifted_betas(alphas_cumprod: torch.Tensor, shift_scale: float = SHIFT_SCALE) -> torch.Tensor:
    """Betas whose SNR is the input schedule's SNR divided by ``shift_scale ** (t / (T-1))``.

    Computed in float64 (the ratios of neighbouring abar' lose digits in float32 near t = 0).
    """
    abar = alphas_cumprod.to(torch.float64)
    num_steps = abar.shape[0]
    t = torch.arange(num_steps, dtype=torch.float64)
    log_snr = torch.log(abar) - torch.log1p(-abar)
    # Interpolating log SNR between the original and the fully shifted schedule is the same
    # as subtracting (t / (T-1)) * log(shift): the weight grows linearly with t.
    shifted_log_snr = log_snr - (t / (num_steps - 1)) * torch.log(torch.tensor(shift_scale, dtype=torch.float64))
    abar_shifted = torch.sigmoid(shifted_log_snr)  # snr / (1 + snr)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), abar_shifted[:-1]])
    return 1.0 - abar_shifted / previous


def make_shifted_ddpm(base_config: Mapping[str, Any], shift_scale: float = SHIFT_SCALE) -> DDPMScheduler:
    """A DDPM scheduler built from SDXL's scheduler config with shifted betas.

    ``base_config`` is the ``scheduler_config.json`` of the SDXL folder (an Euler config:
    DDPM reads the keys it knows, epsilon prediction and leading spacing included, and
    ignores the rest), so the user's copy decides everything except the betas, as upstream.
    """
    config = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    config.pop("trained_betas", None)
    reference = DDPMScheduler.from_config(config)
    # Re-accumulate in float64: diffusers' float32 cumprod drifts by ~1e-4 relative over 1000 steps.
    alphas_cumprod = torch.cumprod(1.0 - reference.betas.to(torch.float64), dim=0)
    betas = shifted_betas(alphas_cumprod, shift_scale)
    return DDPMScheduler.from_config(config, trained_betas=betas.float().numpy())


__all__ = ["SHIFT_SCALE", "make_shifted_ddpm", "shifted_betas"]

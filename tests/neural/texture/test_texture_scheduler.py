"""The shifted-SNR DDPM scheduler against the closed form."""

from __future__ import annotations

import numpy as np
from diffusers import DDPMScheduler
from texture_tiny_models import SDXL_SCHEDULER_CONFIG

from inference_server.neural.texture.scheduler import SHIFT_SCALE, make_shifted_ddpm


def sdxl_alphas_cumprod() -> np.ndarray:
    # SDXL's "scaled_linear" betas: linear in sqrt(beta) from sqrt(0.00085) to sqrt(0.012).
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def test_shifted_betas_match_closed_form() -> None:
    scheduler = make_shifted_ddpm(SDXL_SCHEDULER_CONFIG)
    abar = sdxl_alphas_cumprod()
    t = np.arange(1000)
    # snr' = snr / 8^(t/999)  <=>  abar' = abar / (abar + (1 - abar) * 8^(t/999))
    shift = SHIFT_SCALE ** (t / 999.0)
    abar_shifted = abar / (abar + (1.0 - abar) * shift)
    betas = 1.0 - abar_shifted / np.concatenate([[1.0], abar_shifted[:-1]])
    np.testing.assert_allclose(scheduler.betas.double().numpy(), betas, rtol=2e-5, atol=1e-9)
    np.testing.assert_allclose(scheduler.alphas_cumprod.double().numpy(), abar_shifted, rtol=1e-4)
    # The ends: unchanged at t = 0, SNR divided by exactly 8 at t = 999.
    assert abs(float(scheduler.betas[0]) - 0.00085) < 1e-9
    snr_end = abar_shifted[-1] / (1 - abar_shifted[-1])
    np.testing.assert_allclose(snr_end, abar[-1] / (1 - abar[-1]) / 8.0, rtol=1e-10)


def test_scheduler_is_ddpm_with_sdxl_settings() -> None:
    scheduler = make_shifted_ddpm(SDXL_SCHEDULER_CONFIG)
    assert isinstance(scheduler, DDPMScheduler)
    assert scheduler.config.prediction_type == "epsilon"
    assert scheduler.config.timestep_spacing == "leading"
    scheduler.set_timesteps(50)
    # leading spacing with steps_offset 1: 981, 961, ..., 1
    assert scheduler.timesteps[0].item() == 981 and scheduler.timesteps[-1].item() == 1
    assert len(scheduler.timesteps) == 50

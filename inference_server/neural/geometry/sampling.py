"""Rectified-flow sampling: upstream's Euler steps with classifier-free guidance.

``x_t = (1 - s) x0 + s e``; the transformer predicts ``v = e - x0``. The schedule comes from
the checkpoint's ``FlowMatchEulerDiscreteScheduler`` config (1000 training steps: timesteps
``linspace(1000, 1, N)``, ``s = t / 1000``, then 0). Upstream multiplies the first step's
velocity by zero, so that step leaves the noise unchanged: we skip its forward pass, which gives
the identical result one transformer call sooner.

Everything the loop needs is computed before it starts (step sizes as Python floats, the
timesteps as one device tensor), so the loop itself makes no host-device copies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (latents [B..], timesteps [B]) -> v
StepCallback = Callable[[int, int], None]  # (steps done, total); may raise to cancel


@dataclass(frozen=True)
class FlowSchedule:
    timesteps: tuple[float, ...]  # model input per step, 0..1000
    sigmas: tuple[float, ...]  # noise level per step, plus the final 0

    @property
    def steps(self) -> int:
        return len(self.timesteps)


def flow_schedule(scheduler: Any, num_inference_steps: int) -> FlowSchedule:
    """Read the step schedule off a diffusers flow-matching scheduler (on the CPU, once)."""
    if num_inference_steps < 1:
        raise ValueError("num_inference_steps must be at least 1")
    scheduler.set_timesteps(num_inference_steps, device="cpu")
    ts = scheduler.timesteps.to(torch.float32)
    sig = scheduler.sigmas.to(torch.float32)
    return FlowSchedule(tuple(float(t) for t in ts), tuple(float(s) for s in sig))


def euler_step(x: torch.Tensor, v: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """``x + (sigma_next - sigma) v``, the step size rounded to fp32 exactly as diffusers does."""
    dt = float(np.float32(sigma_next) - np.float32(sigma))
    return x + dt * v.to(x.dtype)


def guided_velocity(v: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """``v_u + g (v_c - v_u)`` for a batch laid out ``[uncond, cond]``."""
    v_uncond, v_cond = v.chunk(2)
    return v_uncond + guidance_scale * (v_cond - v_uncond)


def sample_flow(
    velocity: VelocityFn,
    latents: torch.Tensor,
    schedule: FlowSchedule,
    guidance_scale: float,
    *,
    zero_init_steps: int = 1,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Integrate from noise ``latents`` (fp32) to a clean sample.

    With ``guidance_scale > 1`` each forward sees the batch ``[x, x]`` and the caller's
    condition must be laid out ``[uncond, cond]``. ``zero_init_steps`` is the number of leading
    steps whose velocity upstream zeroes (``zero_steps + 1`` with ``use_zero_init``).
    """
    cfg = guidance_scale > 1.0
    x = latents
    t_all = torch.tensor(schedule.timesteps, dtype=torch.float32, device=x.device)
    n = schedule.steps
    for i in range(n):
        if i >= zero_init_steps:
            model_in = torch.cat([x, x]) if cfg else x
            v = velocity(model_in, t_all[i].expand(model_in.shape[0]))
            if cfg:
                v = guided_velocity(v, guidance_scale)
            x = euler_step(x, v, schedule.sigmas[i], schedule.sigmas[i + 1])
        if callback is not None:
            callback(i + 1, n)
    return x

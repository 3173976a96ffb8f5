"""The objective against the diffusers scheduler and upstream's formulas; per-sample draws."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from inference_server.finetune.geometry.data import draw_sample
from inference_server.finetune.geometry.objective import FlowTable, flow_loss, noisy_latents


def _table() -> FlowTable:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowTable.from_scheduler(FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0))


def test_logit_normal_lookup_indexes_the_schedulers_table() -> None:
    table = _table()
    normal = torch.tensor([-30.0, 0.0, 1.0, 30.0])
    t, sigma = table.lookup(normal)
    # u = sigmoid(n); index floor(1000 u) into timesteps 1000..1 (sigma = t / 1000 with shift 1)
    u = torch.sigmoid(normal)
    index = (u * 1000).long().clamp(0, 999)
    assert torch.equal(t, (1000 - index).float())
    torch.testing.assert_close(sigma, (1000 - index).float() / 1000)
    assert t[0] == 1000 and t[-1] == 1  # u -> 0: pure noise; u -> 1: the last index


def test_preconditioned_loss_is_sigma_squared_velocity_mse() -> None:
    g = torch.Generator().manual_seed(0)
    z, eps, v = (torch.randn(3, 16, 8, generator=g) for _ in range(3))
    sigma = torch.tensor([0.1, 0.5, 0.9])
    x_t = noisy_latents(z, eps, sigma)
    torch.testing.assert_close(x_t[1], 0.5 * z[1] + 0.5 * eps[1])
    plain = flow_loss(v, z, eps, x_t, sigma, precondition_outputs=False)
    pre = flow_loss(v, z, eps, x_t, sigma, precondition_outputs=True)
    torch.testing.assert_close(plain, (v - (eps - z)).pow(2).mean(dim=(1, 2)))
    torch.testing.assert_close(pre, sigma**2 * plain)
    # the exact velocity has zero loss either way
    assert float(flow_loss(eps - z, z, eps, x_t, sigma).max()) < 1e-10


def test_draws_depend_only_on_seed_step_and_sample() -> None:
    moments = np.concatenate([np.ones((16, 8)), np.full((16, 8), -4.0)], axis=1).astype(np.float32)
    visual = np.random.default_rng(0).random((3, 5, 4)).astype(np.float16)
    kw: dict[str, Any] = dict(dropout=0.5, sample_posterior=True, z_scale_factor=2.0)
    a = draw_sample(moments, visual, seed=1, step=4, index=2, **kw)
    b = draw_sample(moments, visual, seed=1, step=4, index=2, **kw)
    c = draw_sample(moments, visual, seed=1, step=4, index=3, **kw)
    assert torch.equal(a.z, b.z) and torch.equal(a.eps, b.eps) and a.dropped == b.dropped
    assert not torch.equal(a.eps, c.eps)
    # z = (mean + exp(logvar / 2) * e) * z_scale_factor: mean 1, std exp(-2)
    assert abs(float(a.z.mean()) / 2.0 - 1.0) < 0.05 and abs(float(a.z.std()) / 2.0 - np.exp(-2.0)) < 0.05
    drops = [draw_sample(moments, visual, seed=1, step=s, index=0, **dict(kw, dropout=0.1)).dropped
             for s in range(2000)]
    assert 0.08 < np.mean(drops) < 0.12  # condition dropout at the configured ratio

"""The pieces that must match upstream exactly, against closed forms (and diffusers' reference blocks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inference_server.neural.geometry.models.layers import FourierEmbedder, split_heads_interleaved, timestep_embedding
from inference_server.neural.geometry.models.transformer import (
    DoubleStreamBlock,
    OutputNorm,
    SingleStreamBlock,
    TimestepProjection,
)
from inference_server.neural.geometry.models.vae import CrossAttention, SelfAttention
from inference_server.neural.geometry.pipeline import octree_coarse
from inference_server.neural.geometry.sampling import FlowSchedule, euler_step, flow_schedule, guided_velocity, sample_flow
from inference_server.neural.geometry.surface import to_upstream_vertices


def test_timestep_embedding_closed_form() -> None:
    t = torch.tensor([0.0, 1.0, 500.5, 1000.0])
    dim = 1280
    emb = timestep_embedding(t, dim)
    half = dim // 2
    i = np.arange(half)
    freqs = np.exp(-math.log(10000.0) * i / half)
    for row, tv in enumerate(t.tolist()):
        np.testing.assert_allclose(emb[row, :half].numpy(), np.sin(tv * freqs), atol=2e-4)  # sin half first
        np.testing.assert_allclose(emb[row, half:].numpy(), np.cos(tv * freqs), atol=2e-4)


def test_timestep_embedding_matches_diffusers_timesteps() -> None:
    from diffusers.models.embeddings import Timesteps

    t = torch.linspace(1000, 1, 7)
    ref = Timesteps(256, flip_sin_to_cos=False, downscale_freq_shift=0)(t)
    assert torch.equal(timestep_embedding(t, 256), ref)


def test_fourier_embedding_layout() -> None:
    emb = FourierEmbedder(num_freqs=8, include_pi=False)
    p = torch.tensor([[0.3, -0.7, 0.11]])
    out = emb(p)[0].numpy()
    assert out.shape == (51,)
    f = 2.0 ** np.arange(8)
    x, y, z = p[0].tolist()
    expected = np.concatenate([[x, y, z], np.sin(x * f), np.sin(y * f), np.sin(z * f),
                               np.cos(x * f), np.cos(y * f), np.cos(z * f)])
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert FourierEmbedder(8, include_pi=True).frequencies[1].item() == pytest.approx(2 * math.pi)


def _manual_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    s = q @ k.T / math.sqrt(q.shape[-1])
    s = np.exp(s - s.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ v


def test_vae_qkv_split_is_per_head_interleaved() -> None:
    torch.manual_seed(0)
    heads, d, n = 3, 4, 5
    attn = SelfAttention(heads * d, heads, qkv_bias=False, qk_norm=False)
    x = torch.randn(1, n, heads * d)
    out = attn(x).detach().numpy()[0]
    qkv = attn.c_qkv(x).detach().numpy()[0]  # (n, heads * 3d): [q_h0 k_h0 v_h0 | q_h1 k_h1 v_h1 | ...]
    per_head = []
    for h in range(heads):
        base = h * 3 * d
        q, k, v = qkv[:, base:base + d], qkv[:, base + d:base + 2 * d], qkv[:, base + 2 * d:base + 3 * d]
        per_head.append(_manual_attention(q, k, v))
    expected = np.concatenate(per_head, axis=1) @ attn.c_proj.weight.detach().numpy().T + attn.c_proj.bias.detach().numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # Reading the projection as [Q | K | V] blocks would give something else.
    q_blocks = split_heads_interleaved(torch.arange(2 * 3 * heads * d, dtype=torch.float32).view(2, 1, -1), heads, 3)[0]
    assert q_blocks[0, 1, 0, 0].item() == 3 * d  # head 1's q starts after head 0's q, k and v


def test_vae_kv_split_is_per_head_interleaved() -> None:
    torch.manual_seed(1)
    heads, d = 2, 4
    attn = CrossAttention(heads * d, heads, qkv_bias=False, qk_norm=False)
    x, data = torch.randn(1, 3, heads * d), torch.randn(1, 6, heads * d)
    out = attn(x, attn.keys_values(data)).detach().numpy()[0]
    q = attn.c_q(x).detach().numpy()[0]
    kv = attn.c_kv(data).detach().numpy()[0]
    per_head = []
    for h in range(heads):
        k, v = kv[:, h * 2 * d:h * 2 * d + d], kv[:, h * 2 * d + d:(h + 1) * 2 * d]
        per_head.append(_manual_attention(q[:, h * d:(h + 1) * d], k, v))
    expected = np.concatenate(per_head, axis=1) @ attn.c_proj.weight.detach().numpy().T + attn.c_proj.bias.detach().numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_flux_blocks_match_diffusers_reference() -> None:
    """Our blocks load diffusers' FLUX block weights strictly and compute the same function."""
    from diffusers.models.embeddings import TimestepEmbedding
    from diffusers.models.normalization import AdaLayerNormContinuous
    from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock, FluxTransformerBlock

    torch.manual_seed(2)
    w, heads = 64, 2
    x, c, temb = torch.randn(2, 7, w), torch.randn(2, 5, w), torch.randn(2, w)

    ref = FluxTransformerBlock(w, heads, w // heads).eval()
    ours = DoubleStreamBlock(w, heads)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref_c, ref_x = ref(x, c, temb)
    our_x, our_c = ours(x, c, temb)
    torch.testing.assert_close(our_x, ref_x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(our_c, ref_c, atol=1e-5, rtol=1e-5)

    ref_s = FluxSingleTransformerBlock(w, heads, w // heads).eval()
    ours_s = SingleStreamBlock(w, heads)
    ours_s.load_state_dict(ref_s.state_dict(), strict=True)
    h = torch.randn(2, 12, w)
    ref_ctx, ref_lat = ref_s(h[:, 5:], h[:, :5], temb)  # diffusers takes the two streams and joins them
    torch.testing.assert_close(ours_s(h, temb), torch.cat([ref_ctx, ref_lat], dim=1), atol=1e-5, rtol=1e-5)

    ref_out = AdaLayerNormContinuous(w, w, elementwise_affine=False, eps=1e-6)
    ours_out = OutputNorm(w)
    ours_out.load_state_dict(ref_out.state_dict(), strict=True)
    torch.testing.assert_close(ours_out(h, temb), ref_out(h, temb), atol=1e-5, rtol=1e-5)

    ref_t = TimestepEmbedding(w, 4 * w, act_fn="gelu", out_dim=w)
    ours_t = TimestepProjection(w)
    ours_t.load_state_dict(ref_t.state_dict(), strict=True)
    torch.testing.assert_close(ours_t(temb), ref_t(temb))


def _schedule(n: int) -> FlowSchedule:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return flow_schedule(FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000), n)


def test_schedule_closed_form() -> None:
    s = _schedule(50)
    np.testing.assert_allclose(s.timesteps, np.linspace(1000, 1, 50), atol=1e-3)
    np.testing.assert_allclose(s.sigmas[:-1], np.linspace(1000, 1, 50) / 1000, atol=1e-6)
    assert s.sigmas[-1] == 0.0 and len(s.sigmas) == 51


def test_euler_cfg_update_closed_form() -> None:
    x = torch.randn(2, 3)
    v_u, v_c = torch.randn(2, 3), torch.randn(2, 3)
    v = guided_velocity(torch.cat([v_u, v_c]), 7.5)
    torch.testing.assert_close(v, v_u + 7.5 * (v_c - v_u))
    torch.testing.assert_close(euler_step(x, v, 0.75, 0.5), x - 0.25 * v)


def test_sampler_matches_diffusers_scheduler_loop() -> None:
    """Same latents as upstream's loop: diffusers' scheduler.step, CFG on [uncond, cond], first velocity x 0."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    torch.manual_seed(3)
    weight = torch.randn(2, 4, 4)  # a toy "network": different maps for the two CFG halves

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        half = x.shape[0] // 2
        scale = (t / 1000.0)[:, None, None]
        return torch.cat([x[:half] @ weight[0], x[half:] @ weight[1]]) * scale + 0.1

    n, g = 6, 7.5
    noise = torch.randn(1, 5, 4)
    calls: list[int] = []

    def counted(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return velocity(x, t)

    ours = sample_flow(counted, noise.clone(), _schedule(n), g)

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    sched.set_timesteps(n, device="cpu")
    x = noise.clone()
    for i, t in enumerate(sched.timesteps):
        v = velocity(torch.cat([x, x]), t.expand(2))
        v_u, v_c = v.chunk(2)
        v = v_u + g * (v_c - v_u)
        if i <= 0:
            v = v * 0.0
        x = sched.step(v, t, x, return_dict=False)[0]
    assert torch.equal(ours, x)
    assert calls == [2] * (n - 1)  # one batched [uncond, cond] forward per step; step 0 needs none


def test_vertex_mapping_to_upstream_closed_form() -> None:
    from inference_server.meshing.extract import grid_to_world

    res, b = 384, 1.05
    idx = np.array([0.0, 1.0, 191.5, 383.25, 384.0])
    ours = grid_to_world(idx, res, b)
    np.testing.assert_allclose(ours, idx * 2 * b / res - b, atol=1e-6)  # the extractor's convention
    up = to_upstream_vertices(np.stack([ours] * 3, axis=1), b, res)
    np.testing.assert_allclose(up[:, 0], idx / 385 * 2.1 - 1.05, atol=1e-6)  # upstream's i/385*2.1-1.05


def test_octree_levels_match_upstream() -> None:
    from inference_server.meshing.extract import level_resolutions

    assert octree_coarse(384) == 96 and octree_coarse(256) == 64 and octree_coarse(512) == 64
    assert level_resolutions(384, octree_coarse(384)) == [96, 192, 384]  # 97^3, 193^3, 385^3 grids


def test_head_rmsnorm_matches_torch() -> None:
    from inference_server.neural.geometry.models.layers import HeadRMSNorm

    norm = HeadRMSNorm(8)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, 8))
    x = torch.randn(2, 3, 4, 8)
    torch.testing.assert_close(norm(x), F.rms_norm(x, (8,), norm.weight, eps=1e-6))

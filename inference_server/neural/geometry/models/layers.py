"""Small building blocks shared by the geometry models.

Every function here mirrors a piece of the upstream computation exactly (the closed-form
tests pin them): the sinusoidal timestep embedding, the Fourier point embedding, the per-head
RMSNorm and the per-head interleaved qkv split of the shape VAE.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoid of the raw scheduler timestep (0..1000), sin half first, no frequency shift.

    Frequencies are ``max_period ** (-i / (dim // 2))`` for ``i < dim // 2``. Computed in fp32:
    the timestep reaches 1000, where half precision would already lose the phase.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    args = timesteps.float()[:, None] * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class FourierEmbedder(nn.Module):
    """Point embedding ``[x, y, z, sin(x f0 .. x fK, y f0 .., z f0 ..), cos(...)]``.

    Frequencies are ``2^0 .. 2^(K-1)``, times pi only when the config asks for it (Step1X-3D:
    no pi). Grouped per coordinate, as the upstream weights expect.
    """

    def __init__(self, num_freqs: int = 8, include_pi: bool = False, input_dim: int = 3) -> None:
        super().__init__()
        freqs = 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        if include_pi:
            freqs = freqs * math.pi
        # Not persistent: the checkpoints do not carry it, and strict loading must not ask for it.
        self.frequencies: torch.Tensor
        self.register_buffer("frequencies", freqs, persistent=False)
        self.num_freqs = num_freqs
        self.out_dim = input_dim * (2 * num_freqs + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embed = (x[..., None] * self.frequencies.to(x.dtype)).reshape(*x.shape[:-1], -1)
        return torch.cat([x, embed.sin(), embed.cos()], dim=-1)


class HeadRMSNorm(nn.Module):
    """RMSNorm over the last (head) dimension with a learnt scale; statistics in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return x32.to(x.dtype) * self.weight.to(x.dtype)


def split_heads_interleaved(x: torch.Tensor, heads: int, parts: int) -> tuple[torch.Tensor, ...]:
    """Split a fused projection laid out per head: ``[B, N, heads * parts * d]``.

    The shape VAE's ``c_qkv`` (parts=3) and ``c_kv`` (parts=2) are viewed as
    ``[B, N, heads, parts * d]`` and cut along the last axis, so head h's q, k and v sit next
    to each other. Reading them as ``[Q | K | V]`` blocks loads without error but decodes noise.
    Returns tensors of shape ``[B, heads, N, d]`` ready for SDPA.
    """
    b, n, width = x.shape
    d = width // heads // parts
    chunks = x.view(b, n, heads, parts * d).split(d, dim=-1)
    return tuple(c.transpose(1, 2) for c in chunks)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[B, H, N, d]`` inputs -> ``[B, N, H * d]``. PyTorch's SDPA picks flash/efficient kernels."""
    out = F.scaled_dot_product_attention(q, k, v)
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)

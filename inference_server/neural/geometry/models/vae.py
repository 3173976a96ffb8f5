"""The shape VAE (a Perceiver over a set of 2048 latents): decoder, field query and encoder.

Parameter names follow upstream (``encoder.*``, ``pre_kl``, ``post_kl``, ``transformer.resblocks.*``,
``decoder.*``), so the official ``vae/diffusion_pytorch_model.safetensors`` loads with
``strict=True``. Generation needs ``decode`` and ``query``; ``encode`` turns a surface point
cloud into latents (for users who want to re-encode an existing mesh).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import ShapeVAEConfig
from .layers import FourierEmbedder, attention, split_heads_interleaved


class MLP(nn.Module):
    """``mlp.c_fc`` / ``mlp.c_proj``, exact GELU, 4x."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class QKNorm(nn.Module):
    """Optional per-head LayerNorm of q and k (``attn.attention.{q,k}_norm``; off in Step1X-3D)."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-6)
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-6)


class SelfAttention(nn.Module):
    """``attn.c_qkv`` (per-head interleaved q|k|v) and ``attn.c_proj``."""

    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        self.heads = heads
        self.c_qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.c_proj = nn.Linear(width, width)
        if qk_norm:
            self.attention = QKNorm(width // heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = split_heads_interleaved(self.c_qkv(x), self.heads, 3)
        if hasattr(self, "attention"):
            q, k = self.attention.q_norm(q), self.attention.k_norm(k)
        return self.c_proj(attention(q, k, v))


class CrossAttention(nn.Module):
    """``attn.c_q``, ``attn.c_kv`` (per-head interleaved k|v) and ``attn.c_proj``."""

    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool, data_width: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.c_q = nn.Linear(width, width, bias=qkv_bias)
        self.c_kv = nn.Linear(data_width or width, 2 * width, bias=qkv_bias)
        self.c_proj = nn.Linear(width, width)
        if qk_norm:
            self.attention = QKNorm(width // heads)

    def keys_values(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = split_heads_interleaved(self.c_kv(data), self.heads, 2)
        if hasattr(self, "attention"):
            k = self.attention.k_norm(k)
        return k, v

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        (q,) = split_heads_interleaved(self.c_q(x), self.heads, 1)
        if hasattr(self, "attention"):
            q = self.attention.q_norm(q)
        k, v = kv
        if k.shape[0] != q.shape[0]:  # one latent set shared by a batch of query chunks
            k, v = k.expand(q.shape[0], -1, -1, -1), v.expand(q.shape[0], -1, -1, -1)
        return self.c_proj(attention(q, k, v))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        self.attn = SelfAttention(width, heads, qkv_bias, qk_norm)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = MLP(width)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ResidualCrossAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        self.attn = CrossAttention(width, heads, qkv_bias, qk_norm)
        self.ln_1 = nn.LayerNorm(width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width)
        self.ln_3 = nn.LayerNorm(width)

    def keys_values(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project the data tokens once; every query chunk then reuses them."""
        return self.attn.keys_values(self.ln_2(data))

    def forward(self, x: torch.Tensor, data: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        kv = data if isinstance(data, tuple) else self.keys_values(data)
        x = x + self.attn(self.ln_1(x), kv)
        return x + self.mlp(self.ln_3(x))


class Perceiver(nn.Module):
    """``resblocks``: a stack of self-attention blocks over the latent set."""

    def __init__(self, width: int, heads: int, layers: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, qkv_bias, qk_norm) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


def farthest_point_sample(points: torch.Tensor, count: int) -> torch.Tensor:
    """Indices ``[B, count]`` of a farthest-point subset, starting at point 0 (deterministic).

    Upstream uses torch_cluster's ``fps`` with a random start; a fixed start keeps encoding
    reproducible and needs no compiled extension.
    """
    b, n, _ = points.shape
    idx = torch.zeros(b, count, dtype=torch.long, device=points.device)
    dist = torch.full((b, n), float("inf"), device=points.device)
    last = torch.zeros(b, dtype=torch.long, device=points.device)
    rows = torch.arange(b, device=points.device)
    for i in range(count):
        idx[:, i] = last
        d = (points - points[rows, last][:, None, :]).pow(2).sum(-1)
        dist = torch.minimum(dist, d)
        last = dist.argmax(dim=1)
    return idx


class PerceiverEncoder(nn.Module):
    """``encoder``: surface points (+ normals) -> latent set, with the sharp-edge branch."""

    def __init__(self, config: ShapeVAEConfig, embedder: FourierEmbedder) -> None:
        super().__init__()
        c = config
        self.config = c
        self.embedder = embedder
        if not c.use_downsample:
            self.query = nn.Parameter(torch.zeros(c.num_latents, c.width))
        in_dim = embedder.out_dim * 2 if c.embed_point_feats else embedder.out_dim + c.point_feats
        self.input_proj = nn.Linear(in_dim, c.width)
        self.cross_attn = ResidualCrossAttentionBlock(c.width, c.heads, c.qkv_bias, c.qk_norm)
        if c.with_sharp_data:
            self.input_proj_sharp = nn.Linear(embedder.out_dim + c.point_feats, c.width)
            self.cross_attn_sharp = ResidualCrossAttentionBlock(c.width, c.heads, c.qkv_bias, c.qk_norm)
        self.self_attn = Perceiver(c.width, c.heads, c.num_encoder_layers, c.qkv_bias, c.qk_norm)
        if c.use_ln_post:
            self.ln_post = nn.LayerNorm(c.width)

    def _tokens(self, surface: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
        pc, feats = surface[..., :3], surface[..., 3:]
        data = self.embedder(pc)
        if feats.shape[-1]:
            data = torch.cat([data, self.embedder(feats) if self.config.embed_point_feats else feats], dim=-1)
        return proj(data)

    def forward(self, surface: torch.Tensor, sharp_surface: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        data = self._tokens(surface, self.input_proj)
        n_query = c.num_latents // 2 if c.with_sharp_data else c.num_latents
        if c.use_downsample:
            idx = farthest_point_sample(surface[..., :3].float(), n_query)
            query = torch.gather(data, 1, idx[..., None].expand(-1, -1, data.shape[-1]))
        else:
            query = self.query[None].expand(surface.shape[0], -1, -1)
        if c.with_sharp_data:
            if sharp_surface is None:
                raise ValueError("this VAE was trained with sharp-edge samples: pass sharp_surface too")
            sharp = self._tokens(sharp_surface, self.input_proj_sharp)
            if c.use_downsample:
                sidx = farthest_point_sample(sharp_surface[..., :3].float(), n_query)
                sharp_query = torch.gather(sharp, 1, sidx[..., None].expand(-1, -1, sharp.shape[-1]))
                query = torch.cat([query, sharp_query], dim=1)
            latents = self.cross_attn(query, data) + self.cross_attn_sharp(query, sharp)
        else:
            latents = self.cross_attn(query, data)
        latents = self.self_attn(latents)
        return self.ln_post(latents) if hasattr(self, "ln_post") else latents


class PerceiverDecoder(nn.Module):
    """``decoder``: Fourier-embedded query points cross-attend to the decoded latent set."""

    def __init__(self, config: ShapeVAEConfig, embedder: FourierEmbedder) -> None:
        super().__init__()
        self.embedder = embedder
        self.query_proj = nn.Linear(embedder.out_dim, config.width)
        self.cross_attn_decoder = ResidualCrossAttentionBlock(config.width, config.heads, config.qkv_bias, config.qk_norm)
        self.ln_post = nn.LayerNorm(config.width)
        self.output_proj = nn.Linear(config.width, config.out_dim)

    def forward(self, queries: torch.Tensor, latents: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = self.query_proj(self.embedder(queries.to(self.query_proj.weight.dtype)))
        x = self.cross_attn_decoder(x, latents)
        return self.output_proj(self.ln_post(x))


class ShapeVAE(nn.Module):
    """The ``vae`` component (upstream ``MichelangeloAutoencoder``)."""

    def __init__(self, config: ShapeVAEConfig) -> None:
        super().__init__()
        if config.embed_type != "fourier":
            raise ValueError(f"only the Fourier point embedding exists in Step1X-3D, not {config.embed_type!r}")
        if config.embed_dim <= 0:
            raise ValueError("the shape VAE needs a KL bottleneck (embed_dim > 0)")
        self.config = config
        embedder = FourierEmbedder(config.num_freqs, config.include_pi)
        self.embedder = embedder
        self.encoder = PerceiverEncoder(config, embedder)
        self.pre_kl = nn.Linear(config.width, 2 * config.embed_dim)
        self.post_kl = nn.Linear(config.embed_dim, config.width)
        self.transformer = Perceiver(config.width, config.heads, config.num_decoder_layers, config.qkv_bias, config.qk_norm)
        self.decoder = PerceiverDecoder(config, embedder)

    @property
    def latent_shape(self) -> tuple[int, int]:
        return self.config.num_latents, self.config.embed_dim

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Sampled latents ``[B, 2048, 64]`` -> decoded latent set ``[B, 2048, width]``."""
        dtype = self.post_kl.weight.dtype
        return self.transformer(self.post_kl(latents.to(dtype) / self.config.z_scale_factor))

    def field_keys_values(self, decoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values of the decoder's cross-attention, computed once per shape."""
        return self.decoder.cross_attn_decoder.keys_values(decoded)

    def query(self, points: torch.Tensor, decoded: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Field value per point ``[B, P, 3] -> [B, P]``: positive inside, surface at 0."""
        return self.decoder(points, decoded)[..., 0]

    def encode(
        self, surface: torch.Tensor, sharp_surface: torch.Tensor | None = None, sample: bool = False
    ) -> torch.Tensor:
        """Surface samples ``[B, N, 3 + point_feats]`` -> latents ``[B, num_latents, embed_dim]``.

        Returns the posterior mean unless ``sample`` (then one draw), scaled by ``z_scale_factor``.
        """
        moments = self.pre_kl(self.encoder(surface, sharp_surface))
        mean, logvar = moments.chunk(2, dim=-1)
        z = mean
        if sample:
            z = mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * torch.randn_like(mean)
        return z * self.config.z_scale_factor

"""The flow transformer: a FLUX-style MMDiT over the 2048-token shape latent set.

Parameter names follow upstream exactly (``dit_model.*``, diffusers' FLUX block names) so the
official ``transformer/diffusion_pytorch_model.safetensors`` loads with ``strict=True``. There
is no positional encoding anywhere: the latent set is permutation-equivariant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import TransformerConfig
from .layers import HeadRMSNorm, attention, timestep_embedding


class TimestepProjection(nn.Module):
    """``time_proj``: Linear(W, 4W) - exact GELU - Linear(4W, W) on the sinusoid."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(width, 4 * width)
        self.linear_2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(x)))


class AdaModulation(nn.Module):
    """``norm*.linear``: SiLU(temb) -> ``chunks`` modulation vectors of width W."""

    def __init__(self, width: int, chunks: int) -> None:
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(width, chunks * width)

    def forward(self, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(F.silu(temb))[:, None, :].chunk(self.chunks, dim=-1)


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine parameters, eps 1e-6 (FLUX's pre-modulation norm)."""
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


class GELUProjection(nn.Module):
    """``ff.net.0``: Linear then tanh-approximated GELU (diffusers' ``gelu-approximate``)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """``ff.net.{0,2}``; index 1 is upstream's (parameter-free) dropout slot."""

    def __init__(self, width: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.ModuleList([GELUProjection(width, mult * width), nn.Identity(), nn.Linear(mult * width, width)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class JointAttention(nn.Module):
    """Attention of a double-stream block: latent (``to_*``) and condition (``add_*``) streams."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        head_dim = width // heads
        self.heads = heads
        self.to_q = nn.Linear(width, width)
        self.to_k = nn.Linear(width, width)
        self.to_v = nn.Linear(width, width)
        self.norm_q = HeadRMSNorm(head_dim)
        self.norm_k = HeadRMSNorm(head_dim)
        self.add_q_proj = nn.Linear(width, width)
        self.add_k_proj = nn.Linear(width, width)
        self.add_v_proj = nn.Linear(width, width)
        self.norm_added_q = HeadRMSNorm(head_dim)
        self.norm_added_k = HeadRMSNorm(head_dim)
        self.to_out = nn.ModuleList([nn.Linear(width, width), nn.Identity()])
        self.to_add_out = nn.Linear(width, width)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.norm_q(self._heads(self.to_q(x)))
        k = self.norm_k(self._heads(self.to_k(x)))
        v = self._heads(self.to_v(x))
        cq = self.norm_added_q(self._heads(self.add_q_proj(context)))
        ck = self.norm_added_k(self._heads(self.add_k_proj(context)))
        cv = self._heads(self.add_v_proj(context))
        # Joint sequence is [condition, latent], as upstream concatenates.
        out = attention(torch.cat([cq, q], dim=2), torch.cat([ck, k], dim=2), torch.cat([cv, v], dim=2))
        n_ctx = context.shape[1]
        return self.to_out[0](out[:, n_ctx:]), self.to_add_out(out[:, :n_ctx])


class SelfAttention(nn.Module):
    """Attention of a single-stream block (``pre_only``: no output projection of its own)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        head_dim = width // heads
        self.heads = heads
        self.to_q = nn.Linear(width, width)
        self.to_k = nn.Linear(width, width)
        self.to_v = nn.Linear(width, width)
        self.norm_q = HeadRMSNorm(head_dim)
        self.norm_k = HeadRMSNorm(head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, -1).transpose(1, 2)

        return attention(self.norm_q(heads(self.to_q(x))), self.norm_k(heads(self.to_k(x))), heads(self.to_v(x)))


class DoubleStreamBlock(nn.Module):
    """``transformer_blocks.{i}``: separate weights for latent and condition tokens, joint attention."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = AdaModulation(width, 6)
        self.norm1_context = AdaModulation(width, 6)
        self.attn = JointAttention(width, heads)
        self.ff = FeedForward(width)
        self.ff_context = FeedForward(width)

    def forward(self, x: torch.Tensor, context: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, scale, gate, shift_mlp, scale_mlp, gate_mlp = self.norm1(temb)
        c_shift, c_scale, c_gate, c_shift_mlp, c_scale_mlp, c_gate_mlp = self.norm1_context(temb)
        attn_x, attn_c = self.attn(layer_norm(x) * (1 + scale) + shift, layer_norm(context) * (1 + c_scale) + c_shift)
        x = x + gate * attn_x
        x = x + gate_mlp * self.ff(layer_norm(x) * (1 + scale_mlp) + shift_mlp)
        context = context + c_gate * attn_c
        context = context + c_gate_mlp * self.ff_context(layer_norm(context) * (1 + c_scale_mlp) + c_shift_mlp)
        if context.dtype == torch.float16:  # as upstream: keep fp16 activations finite
            context = context.clip(-65504, 65504)
        return x, context


class SingleStreamBlock(nn.Module):
    """``single_transformer_blocks.{i}``: parallel attention + MLP over the joint sequence."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm = AdaModulation(width, 3)
        self.attn = SelfAttention(width, heads)
        self.proj_mlp = nn.Linear(width, mlp_ratio * width)
        self.proj_out = nn.Linear(width + mlp_ratio * width, width)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.norm(temb)
        h = layer_norm(x) * (1 + scale) + shift
        mlp = F.gelu(self.proj_mlp(h), approximate="tanh")
        x = x + gate * self.proj_out(torch.cat([self.attn(h), mlp], dim=-1))
        if x.dtype == torch.float16:
            x = x.clip(-65504, 65504)
        return x


class OutputNorm(nn.Module):
    """``norm_out``: AdaLN-continuous; the linear gives (scale, shift) in that order."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 2 * width)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(temb))[:, None, :].chunk(2, dim=-1)
        return layer_norm(x) * (1 + scale) + shift


class FluxTransformer1D(nn.Module):
    """``dit_model``: the denoiser proper."""

    def __init__(self, width: int, heads: int, in_channels: int, layers: int, single_layers: int, cond_dim: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"transformer width {width} is not a multiple of {heads} heads")
        self.width = width
        self.time_proj = TimestepProjection(width)
        self.proj_in = nn.Linear(in_channels, width)
        self.proj_cross_attention = nn.Linear(cond_dim, width)
        self.transformer_blocks = nn.ModuleList([DoubleStreamBlock(width, heads) for _ in range(layers)])
        self.single_transformer_blocks = nn.ModuleList([SingleStreamBlock(width, heads) for _ in range(single_layers)])
        self.norm_out = OutputNorm(width)
        self.proj_out = nn.Linear(width, in_channels)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        dtype = self.proj_in.weight.dtype
        temb = self.time_proj(timestep_embedding(timestep, self.width).to(dtype))
        h = self.proj_in(x.to(dtype))
        c = self.proj_cross_attention(condition.to(dtype))
        for block in self.transformer_blocks:
            h, c = block(h, c, temb)
        n_ctx = c.shape[1]
        h = torch.cat([c, h], dim=1)
        for single in self.single_transformer_blocks:
            h = single(h, temb)
        return self.proj_out(self.norm_out(h[:, n_ctx:], temb))


class ConditionProjection(nn.Sequential):
    """Upstream's optional RMSNorm + Linear for a condition whose width differs from ``condition_dim``."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__(nn.RMSNorm(dim_in), nn.Linear(dim_in, dim_out))


class Step1X3DTransformer(nn.Module):
    """The whole ``transformer`` component (upstream ``FluxDenoiser``): condition assembly + DiT.

    ``forward(latents [B, N, C], timestep [B] in 0..1000, visual [B, Tv, Dv], label [B, 3, Dl])``
    returns the velocity ``[B, N, C]`` in the latent dtype.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if config.multi_condition_type != "in_context":
            raise ValueError("only in-context conditioning exists upstream")
        self.config = config
        self.dit_model = FluxTransformer1D(
            width=config.width,
            heads=config.num_heads,
            in_channels=config.input_channels,
            layers=config.layers,
            single_layers=config.num_single_layers,
            cond_dim=config.condition_dim,
        )
        # Attribute names (with upstream's spelling) decide the checkpoint keys.
        if config.use_visual_condition and config.visual_condition_dim != config.condition_dim:
            self.proj_visual_condtion = ConditionProjection(config.visual_condition_dim, config.condition_dim)
        if config.use_caption_condition and config.caption_condition_dim != config.condition_dim:
            self.proj_caption_condtion = ConditionProjection(config.caption_condition_dim, config.condition_dim)
        if config.use_label_condition and config.label_condition_dim != config.condition_dim:
            self.proj_label_condtion = ConditionProjection(config.label_condition_dim, config.condition_dim)

    def assemble_condition(self, visual: torch.Tensor | None, label: torch.Tensor | None = None) -> torch.Tensor:
        """Concatenate the condition tokens in upstream's order: visual, (caption), label."""
        parts: list[torch.Tensor] = []
        cfg = self.config
        if cfg.use_visual_condition:
            if visual is None:
                raise ValueError("this transformer expects a visual condition")
            parts.append(self.proj_visual_condtion(visual) if hasattr(self, "proj_visual_condtion") else visual)
        if cfg.use_label_condition:
            if label is None:
                raise ValueError("this transformer expects a label condition")
            parts.append(self.proj_label_condtion(label) if hasattr(self, "proj_label_condtion") else label)
        if not parts:
            raise ValueError("the transformer config enables no condition")
        return torch.cat(parts, dim=1)

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        visual: torch.Tensor | None = None,
        label: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if condition is None:
            condition = self.assemble_condition(visual, label)
        return self.dit_model(latents, timestep, condition).to(latents.dtype)

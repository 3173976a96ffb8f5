"""MV-Adapter attention processors: multi-view row/column attention and reference attention.

Every UNet self-attention (``attn1``) gets a :class:`MVRowColAttnProcessor` holding two extra
branches whose outputs are added to the frozen SDXL self-attention output:

* multi-view attention (``to_q_mv``, ``to_k_mv``, ``to_v_mv``, ``to_out_mv.0``): tokens attend
  across views. The six orthographic views are front, right, back, left, top, bottom.
  *Row* attention joins the four side views: one image row of all four views is a single
  sequence (4 x width tokens), because a horizontal ring around the object stays on the same
  image row in all of them. *Column* attention joins [front mirrored left-right, back, top,
  bottom]: one image column of the four is a sequence (4 x height tokens), because a vertical
  ring over the top stays in one column once the front is mirrored into the back's column
  order. Front and back take the mean of both, the sides only rows, top and bottom only columns.
* reference attention (``to_q_ref``, ``to_k_ref``, ``to_v_ref``, ``to_out_ref.0``): tokens attend
  to the self-attention inputs of the same layer cached from one UNet pass over the reference
  image's latents at t = 0.

The parameter names are the official ones, so the adapter file's keys
(``<layer>.attn1.processor.to_q_mv.weight`` ...) load straight into ``unet.state_dict()``:
diffusers registers a processor that is an ``nn.Module`` as the submodule ``processor``.
Cross-attention (``attn2``) layers get the same class with both branches off: it has no
parameters, computes plain SDPA attention and accepts the pipeline's extra keyword arguments
(diffusers would log a warning per call for a processor that does not).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn

NUM_VIEWS = 6  # front, right, back, left, top, bottom (row/column grouping needs exactly these)
ROW_VIEWS = (0, 1, 2, 3)  # front, right, back, left
COLUMN_VIEWS = (0, 2, 4, 5)  # front (mirrored), back, top, bottom

RefStates = dict[str, torch.Tensor]


def _projection(dim: int, inner_dim: int, **factory: Any) -> tuple[nn.Linear, nn.Linear, nn.Linear, nn.ModuleList]:
    # q/k/v without bias and an output Linear with bias followed by a no-op Dropout: the
    # ModuleList keeps the official key ``to_out_*.0.weight``.
    return (
        nn.Linear(dim, inner_dim, bias=False, **factory),
        nn.Linear(dim, inner_dim, bias=False, **factory),
        nn.Linear(dim, inner_dim, bias=False, **factory),
        nn.ModuleList([nn.Linear(inner_dim, dim, bias=True, **factory), nn.Dropout(0.0)]),
    )


def multiview_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, height: int, width: int, scale: float | None = None
) -> torch.Tensor:
    """Row/column multi-view attention.

    ``query``/``key``/``value``: ``[groups * 6, height * width, heads, head_dim]`` with the six
    views of one group consecutive in the order front, right, back, left, top, bottom.
    Returns ``[groups * 6, height * width, heads * head_dim]``.
    """
    total, tokens, heads, head_dim = query.shape
    if total % NUM_VIEWS:
        raise ValueError(f"multi-view attention needs a batch of whole groups of {NUM_VIEWS} views, got {total}")
    if tokens != height * width:
        raise ValueError(f"token count {tokens} does not match a {height}x{width} latent")
    groups = total // NUM_VIEWS

    def grid(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(groups, NUM_VIEWS, height, width, heads, head_dim)

    q, k, v = grid(query), grid(key), grid(value)

    # Rows: [g, 4, h, w, H, d] -> sequences of (view, column) per (group, row).
    def rows(x: torch.Tensor) -> torch.Tensor:
        x = x[:, list(ROW_VIEWS)].permute(0, 2, 4, 1, 3, 5)  # g, h, H, 4, w, d
        return x.reshape(groups * height, heads, len(ROW_VIEWS) * width, head_dim)

    out_rows = F.scaled_dot_product_attention(rows(q), rows(k), rows(v), scale=scale)
    out_rows = out_rows.reshape(groups, height, heads, len(ROW_VIEWS), width, head_dim)
    out_rows = out_rows.permute(0, 3, 1, 4, 2, 5)  # g, 4, h, w, H, d

    # Columns: mirror the front view so its columns line up with the back/top/bottom columns.
    def columns(x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, :1].flip(3), x[:, list(COLUMN_VIEWS[1:])]], dim=1)
        x = x.permute(0, 3, 4, 1, 2, 5)  # g, w, H, 4, h, d
        return x.reshape(groups * width, heads, len(COLUMN_VIEWS) * height, head_dim)

    out_cols = F.scaled_dot_product_attention(columns(q), columns(k), columns(v), scale=scale)
    out_cols = out_cols.reshape(groups, width, heads, len(COLUMN_VIEWS), height, head_dim)
    out_cols = out_cols.permute(0, 3, 4, 1, 2, 5)  # g, 4, h, w, H, d
    out_cols = torch.cat([out_cols[:, :1].flip(3), out_cols[:, 1:]], dim=1)  # un-mirror the front

    views = torch.stack(
        [
            (out_rows[:, 0] + out_cols[:, 0]) * 0.5,  # front
            out_rows[:, 1],  # right
            (out_rows[:, 2] + out_cols[:, 1]) * 0.5,  # back
            out_rows[:, 3],  # left
            out_cols[:, 2],  # top
            out_cols[:, 3],  # bottom
        ],
        dim=1,
    )
    return views.reshape(total, tokens, heads * head_dim)


class MVRowColAttnProcessor(nn.Module):
    """Self-attention plus the MV-Adapter branches (see the module docstring).

    Per-call keyword arguments (through the UNet's ``cross_attention_kwargs``):
    ``mv_scale``/``ref_scale`` weight the branches; ``use_mv``/``use_ref`` switch them off for a
    call (the reference pass); ``cache_hidden_states`` (a dict) receives this layer's input;
    ``ref_hidden_states`` maps layer names to cached inputs of shape ``[groups, L, C]``, one per
    group of six views in the batch (zeros for the unconditional group, as in training).
    Views must be square (the model was trained at 768x768; upstream assumes it too).
    """

    def __init__(
        self,
        hidden_size: int,
        name: str,
        use_mv: bool = True,
        use_ref: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.use_mv = use_mv
        self.use_ref = use_ref
        factory = {"device": device, "dtype": dtype}
        if use_mv:
            self.to_q_mv, self.to_k_mv, self.to_v_mv, self.to_out_mv = _projection(hidden_size, hidden_size, **factory)
        if use_ref:
            self.to_q_ref, self.to_k_ref, self.to_v_ref, self.to_out_ref = _projection(hidden_size, hidden_size, **factory)

    def forward(  # mirrors diffusers' processor call signature plus the MV-Adapter arguments
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        mv_scale: float = 1.0,
        ref_hidden_states: RefStates | None = None,
        ref_scale: float = 1.0,
        cache_hidden_states: RefStates | None = None,
        use_mv: bool = True,
        use_ref: bool = True,
        num_views: int = NUM_VIEWS,
    ) -> torch.Tensor:
        if cache_hidden_states is not None and (self.use_mv or self.use_ref):
            # The reference pass: remember this self-attention's input for the reference branch.
            cache_hidden_states[self.name] = hidden_states.detach().clone()
        use_mv = self.use_mv and use_mv
        use_ref = self.use_ref and use_ref and ref_hidden_states is not None

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch, tokens, _ = hidden_states.shape
        kv_len = tokens if encoder_hidden_states is None else encoder_hidden_states.shape[1]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, kv_len, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)

        query = attn.to_q(hidden_states)
        key = attn.to_k(context)
        value = attn.to_v(context)
        inner_dim = key.shape[-1]
        heads = attn.heads
        head_dim = inner_dim // heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], -1, heads, head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(query), split(key), split(value), attn_mask=attention_mask, scale=attn.scale)
        out = out.transpose(1, 2).reshape(batch, -1, inner_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))

        if use_mv:
            if num_views != NUM_VIEWS:
                raise ValueError(f"row/column multi-view attention is defined for {NUM_VIEWS} views, got {num_views}")
            side = int(round(tokens**0.5))
            if side * side != tokens:
                raise ValueError("multi-view attention needs square views (the model was trained at 768x768)")
            mv = multiview_attention(
                self.to_q_mv(hidden_states).view(batch, tokens, heads, head_dim),
                self.to_k_mv(context).view(batch, tokens, heads, head_dim),
                self.to_v_mv(context).view(batch, tokens, heads, head_dim),
                side,
                side,
                scale=attn.scale,
            ).to(query.dtype)
            out = out + self.to_out_mv[1](self.to_out_mv[0](mv)) * mv_scale

        if use_ref:
            assert ref_hidden_states is not None
            out = out + self._reference(hidden_states, ref_hidden_states[self.name], heads, head_dim, attn.scale) * ref_scale

        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    # diffusers calls processors directly and filters the call's keyword arguments by the
    # signature of ``processor.__call__``: expose forward's (nn.Module's is ``*args, **kwargs``).
    __call__ = forward  # type: ignore[assignment]

    def _reference(
        self, hidden_states: torch.Tensor, reference: torch.Tensor, heads: int, head_dim: int, scale: float
    ) -> torch.Tensor:
        # All views of a group share one reference, so fold the views into the query sequence
        # and attend once per group: same result as repeating the reference per view, without
        # materialising views x reference tokens of keys and values.
        batch, tokens, channels = hidden_states.shape
        groups = reference.shape[0]
        if batch % groups:
            raise ValueError(f"reference states for {groups} groups do not divide a batch of {batch}")
        per_group = batch // groups
        q = self.to_q_ref(hidden_states).view(groups, per_group * tokens, heads, head_dim).transpose(1, 2)
        ref = reference.to(hidden_states.dtype)
        k = self.to_k_ref(ref).view(groups, -1, heads, head_dim).transpose(1, 2)
        v = self.to_v_ref(ref).view(groups, -1, heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
        out = out.transpose(1, 2).reshape(batch, tokens, heads * head_dim)
        return self.to_out_ref[1](self.to_out_ref[0](out))


def self_attention_hidden_size(name: str, block_out_channels: tuple[int, ...] | list[int]) -> int:
    """Channel width of the attention layer ``name`` in a UNet2DConditionModel."""
    if name.startswith("mid_block"):
        return int(block_out_channels[-1])
    index = int(name.split(".")[1])
    if name.startswith("up_blocks"):
        return int(list(reversed(block_out_channels))[index])
    if name.startswith("down_blocks"):
        return int(block_out_channels[index])
    raise ValueError(f"unexpected attention layer {name}")


def install_mv_processors(
    unet: Any, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> dict[str, MVRowColAttnProcessor]:
    """Give every self-attention the MV-Adapter branches and every cross-attention a plain processor.

    ``device="meta"`` skips the random initialisation of ~0.8 B parameters when the weights are
    loaded right after (with ``assign=True``). Returns the processors by layer name
    (``down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor``).
    """
    config = unet.config  # a diffusers UNet2DConditionModel
    processors: dict[str, MVRowColAttnProcessor] = {}
    for name in unet.attn_processors:
        is_self = name.endswith("attn1.processor")
        size = self_attention_hidden_size(name, config.block_out_channels)
        processors[name] = MVRowColAttnProcessor(size, name=name, use_mv=is_self, use_ref=is_self, device=device, dtype=dtype)
    unet.set_attn_processor(dict(processors))  # a copy: diffusers pops from the dict it gets
    return processors


__all__ = ["MVRowColAttnProcessor", "install_mv_processors", "multiview_attention", "NUM_VIEWS"]

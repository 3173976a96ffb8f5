"""MV-Adapter processors: row/column view grouping, front-view mirroring, reference attention, key names."""

from __future__ import annotations

import math

import pytest
import torch
from texture_tiny_models import tiny_unet

from inference_server.neural.texture.models import MVRowColAttnProcessor, install_mv_processors, multiview_attention


def _attend(q: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor]) -> torch.Tensor:
    k, v = torch.stack(keys), torch.stack(values)
    w = torch.softmax(k @ q / math.sqrt(q.shape[0]), dim=0)
    return w @ v


def hand_multiview(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Loop version of the grouping, straight from the definition. q/k/v: [6, H, W, d] (one head)."""
    views, height, width, dim = q.shape
    out = torch.zeros_like(q)
    for view in range(6):
        for i in range(height):
            for j in range(width):
                row = col = None
                if view in (0, 1, 2, 3):  # same image row of front, right, back, left
                    keys = [k[u, i, jj] for u in (0, 1, 2, 3) for jj in range(width)]
                    vals = [v[u, i, jj] for u in (0, 1, 2, 3) for jj in range(width)]
                    row = _attend(q[view, i, j], keys, vals)
                if view in (0, 2, 4, 5):
                    # Column c of the mirrored front is column W-1-c of the front. The pixel's column
                    # in the shared (mirrored) order:
                    c = width - 1 - j if view == 0 else j
                    keys = [k[0, ii, width - 1 - c] for ii in range(height)]
                    vals = [v[0, ii, width - 1 - c] for ii in range(height)]
                    keys += [k[u, ii, c] for u in (2, 4, 5) for ii in range(height)]
                    vals += [v[u, ii, c] for u in (2, 4, 5) for ii in range(height)]
                    col = _attend(q[view, i, j], keys, vals)
                if row is not None and col is not None:
                    out[view, i, j] = (row + col) / 2
                else:
                    out[view, i, j] = row if row is not None else col
    return out


@pytest.mark.parametrize("height,width", [(2, 3), (3, 3)])
def test_row_column_grouping_matches_hand_computation(height: int, width: int) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(6, height, width, 4, generator=g, dtype=torch.float64) for _ in range(3))
    expected = hand_multiview(q, k, v)
    got = multiview_attention(*(x.reshape(6, height * width, 1, 4) for x in (q, k, v)), height, width)
    torch.testing.assert_close(got.reshape(6, height, width, 4), expected)


def test_front_view_is_mirrored_for_column_attention() -> None:
    """A top-view query that matches exactly one front key must read that key's value from the
    mirrored column: top column c sees front column W-1-c."""
    height = width = 3
    dim = 2
    q = torch.zeros(6, height, width, dim, dtype=torch.float64)
    k = torch.zeros_like(q)
    v = torch.zeros_like(q)
    q[4, 1, 0] = torch.tensor([50.0, 0.0])  # top view, column 0
    k[0, 2, 2] = torch.tensor([50.0, 0.0])  # front view, column 2 = W-1-0
    v[0, 2, 2] = torch.tensor([7.0, -3.0])
    out = multiview_attention(*(x.reshape(6, 9, 1, dim) for x in (q, k, v)), height, width).reshape(6, 3, 3, dim)
    torch.testing.assert_close(out[4, 1, 0], torch.tensor([7.0, -3.0], dtype=torch.float64))
    # Without the mirroring the same key would sit in column 2 of the shared order: top column 2 must not see it.
    q2 = torch.zeros_like(q)
    q2[4, 1, 2] = torch.tensor([50.0, 0.0])
    out2 = multiview_attention(*(x.reshape(6, 9, 1, dim) for x in (q2, k, v)), height, width).reshape(6, 3, 3, dim)
    assert out2[4, 1, 2].abs().max() < 1.0


def test_views_of_different_groups_do_not_mix() -> None:
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(12, 4, 2, 3, generator=g) for _ in range(3))
    both = multiview_attention(q, k, v, 2, 2)
    first = multiview_attention(q[:6], k[:6], v[:6], 2, 2)
    second = multiview_attention(q[6:], k[6:], v[6:], 2, 2)
    torch.testing.assert_close(both, torch.cat([first, second]))


def test_installed_processors_have_official_names() -> None:
    unet = tiny_unet()
    processors = install_mv_processors(unet)
    self_layers = [n for n in processors if n.endswith("attn1.processor")]
    assert self_layers and all(processors[n].use_mv and processors[n].use_ref for n in self_layers)
    assert all(not p.use_mv and not p.use_ref for n, p in processors.items() if n.endswith("attn2.processor"))
    keys = {k for k in unet.state_dict() if ".processor." in k}
    per_layer = {"to_q_mv.weight", "to_k_mv.weight", "to_v_mv.weight", "to_out_mv.0.weight", "to_out_mv.0.bias",
                 "to_q_ref.weight", "to_k_ref.weight", "to_v_ref.weight", "to_out_ref.0.weight", "to_out_ref.0.bias"}
    expected = {f"{layer[: -len('processor')]}processor.{suffix}" for layer in self_layers for suffix in per_layer}
    assert keys == expected


def test_reference_branch_folds_views_exactly() -> None:
    """Six views sharing one reference give the same result as attending view by view; an all-zero
    reference (the unconditional half) gives just the output bias."""
    g = torch.Generator().manual_seed(2)
    proc = MVRowColAttnProcessor(8, "x", use_mv=False, use_ref=True).double()
    hidden = torch.randn(12, 5, 8, generator=g, dtype=torch.float64)
    ref = torch.randn(1, 7, 8, generator=g, dtype=torch.float64)
    states = torch.cat([torch.zeros_like(ref), ref])
    got = proc._reference(hidden, states, heads=2, head_dim=4, scale=0.5)
    torch.testing.assert_close(got[:6], proc.to_out_ref[0].bias.expand(6, 5, 8))
    for view in range(6, 12):
        single = proc._reference(hidden[view:view + 1], ref, heads=2, head_dim=4, scale=0.5)
        torch.testing.assert_close(got[view:view + 1], single)


def test_processor_rejects_other_view_counts() -> None:
    proc = MVRowColAttnProcessor(8, "x")
    from diffusers.models.attention_processor import Attention

    attn = Attention(8, heads=2, dim_head=4)
    with pytest.raises(ValueError, match="6 views"):
        proc(attn, torch.randn(4, 4, 8), num_views=4)

"""Exact drop-in mode of the texture stage: ``Step1X3DTexturePipeline`` prepares the reference image
as upstream does (crop box from alpha > 0 grown at the top and left only, truncating compositing
over 0.5 grey); the server's stage keeps its own (alpha >= 128, one pixel all round). Hand-built
images with the expected numbers worked out in the comments."""

from __future__ import annotations

import numpy as np

from inference_server.neural.texture.conditioning import (
    prepare_reference,
    prepare_reference_upstream,
    upstream_reference_box,
)

GREY = 127  # 0.5 * 255 = 127.5, truncated


def rectangle(soft_fringe: int = 0) -> np.ndarray:
    """20 x 30 RGBA: opaque blue on rows 5..14, columns 8..21; optionally a one-pixel fringe of
    alpha ``soft_fringe`` around it (a soft-edged cut-out)."""
    img = np.zeros((20, 30, 4), np.uint8)
    if soft_fringe:
        img[4:16, 7:23] = (0, 0, 255, soft_fringe)
    img[5:15, 8:22] = (0, 0, 255, 255)
    return img


def test_crop_box_of_a_soft_edged_cut_out() -> None:
    hard, soft = rectangle(), rectangle(soft_fringe=40)
    # alpha > 0 spans rows 5..14 (hard) or 4..15 (soft): start one row above, end after the last row.
    assert upstream_reference_box(hard[..., 3]) == (4, 15, 7, 22)
    assert upstream_reference_box(soft[..., 3]) == (3, 16, 6, 23)
    # Our own crop ignores the faint fringe (alpha < 128): the same frame for both, so soft-edged
    # cut-outs are reframed by the drop-in, exactly as upstream reframes them.
    ours_soft, ups_soft = prepare_reference(soft, 64), prepare_reference_upstream(soft, 64)
    assert not np.array_equal(ours_soft, ups_soft)


def test_upstream_reference_placement_and_compositing() -> None:
    out = prepare_reference_upstream(rectangle(), 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # Crop 11 x 15 (rows 4..14, columns 7..21); longer side int(0.9 * 64) = 57, the other
    # int(11 * 57.6 / 15) = 42; top-left corner ((64 - 42) // 2, (64 - 57) // 2) = (11, 3).
    inside = np.zeros((64, 64), bool)
    inside[11:53, 3:60] = True
    assert (out[~inside] == GREY).all()  # transparent canvas over 0.5 grey, truncated
    # No margin below or right of the object: the pasted block's last row and column are the
    # object itself, pure blue; the transparent margin row/column above and left blends with grey.
    assert (out[52, 10:55] == (0, 0, 255)).all() and (out[20:50, 59] == (0, 0, 255)).all()
    assert (out[53, 10:55] == GREY).all()
    # The margin row is 57 / 15 = 3.8 output rows tall: fully transparent rows first, then the
    # object's edge blended with grey (R = G = grey * (1 - a), B = that + 255 a) rising to blue.
    column = out[11:19, 30].astype(int)
    assert (column[:2] == GREY).all() and (column[-2:] == (0, 0, 255)).all()
    blend = column[2:6]
    assert (blend[:, 0] == blend[:, 1]).all() and (np.diff(blend[:, 2]) > 0).all()
    assert np.allclose(blend[:, 0], np.floor(127.5 * (1 - (blend[:, 2] - blend[:, 0]) / 255.0)), atol=1)
    # Ours pads one pixel on every side, so its bottom row blends with grey instead.
    ours = prepare_reference(rectangle(), 64)
    bottom = np.nonzero((ours != GREY).any(axis=2).any(axis=1))[0].max()
    assert tuple(ours[bottom, 30]) != (0, 0, 255)


def test_image_without_cut_out_is_keyed_first() -> None:
    img = np.full((40, 40, 3), 255, np.uint8)  # a white backdrop ...
    img[10:30, 12:28] = (200, 30, 30)  # ... with a red block: keying finds it, as upstream's network would
    out = prepare_reference_upstream(img, 64)
    # Keyed alpha is hard (0/255): crop rows 9..29 (21), columns 11..27 (17) -> 57 x int(17 * 57.6 / 21) = 46.
    inside = np.zeros((64, 64), bool)
    inside[3:60, 9:55] = True
    assert (out[~inside] == GREY).all() and tuple(out[59, 30]) == (200, 30, 30)


def test_dropin_pipeline_selects_upstream_preprocessing(tiny_weights: dict) -> None:
    from inference_server.neural.texture import Step1X3DTexturePipeline
    from inference_server.neural.texture.config import TextureConfig

    pipe = Step1X3DTexturePipeline.from_pretrained(
        tiny_weights["root"], sdxl_dir=tiny_weights["sdxl_dir"], vae_dir=tiny_weights["vae_dir"], device="cpu",
        dtype="float32", resolution=64)
    assert pipe.config.reference_preprocessing == "upstream"
    assert TextureConfig(adapter_file=tiny_weights["adapter_file"], sdxl_dir=tiny_weights["sdxl_dir"],
                         vae_dir=tiny_weights["vae_dir"]).reference_preprocessing == "ours"

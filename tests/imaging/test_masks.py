"""Masks you can trust: studio gradients separate cleanly, border slivers are backdrop, and an
outline that cannot be told from the backdrop stops the job with one sentence."""

from __future__ import annotations

import numpy as np
import pytest

from inference_server.imaging.prepare import prepare_reference
from inference_server.imaging.segment import CUTOUT_HINT, object_mask
from inference_server.pipeline.base import PipelineError

S = 400


def mug_cutout() -> np.ndarray:
    """A mug-like object (body + handle ring) as an RGBA cut-out with soft edges."""
    yy, xx = np.mgrid[0:S, 0:S] + 0.5
    body = (np.abs(xx - 180) <= 80) & (np.abs(yy - 200) <= 100)
    ring = np.abs(np.hypot(xx - 265, yy - 200) - 45) <= 9
    img = np.zeros((S, S, 4), np.uint8)
    img[..., :3] = (60, 110, 170)
    img[..., 3] = (body | ring) * 255
    return img


def on_gradient(rgba: np.ndarray, top: float = 235.0, bottom: float = 180.0) -> np.ndarray:
    """A studio sweep: light grey fading vertically, with a little sensor noise; no alpha."""
    ramp = np.linspace(top, bottom, rgba.shape[0])[:, None, None] * np.ones((1, rgba.shape[1], 3))
    a = rgba[..., 3:4].astype(np.float64) / 255
    noise = np.random.default_rng(0).normal(0, 2.0, ramp.shape)
    return np.clip(np.round(rgba[..., :3] * a + ramp * (1 - a) + noise), 0, 255).astype(np.uint8)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_gradient_backdrop_separates_cleanly() -> None:
    cutout = mug_cutout()
    found = object_mask(on_gradient(cutout))
    assert found.source == "keyed"
    assert iou(found.mask, cutout[..., 3] >= 128) > 0.98


def test_detached_sliver_at_the_border_is_backdrop() -> None:
    """The issue's 'mug with a detached plank': a dark band where the sweep meets the floor,
    touching the image's left edge and apart from the object, must not become part of it."""
    cutout = mug_cutout()
    rgb = on_gradient(cutout)
    rgb[370:382, 0:150] = (90, 85, 80)  # the plank: touches the border, detached from the mug
    found = object_mask(rgb)
    assert not found.mask[370:382, 0:150].any()
    assert iou(found.mask, cutout[..., 3] >= 128) > 0.98
    # The prepared canvas is cropped to the mug alone (x 100-319, y 100-300), not to the plank.
    x0, y0, x1, y1 = prepare_reference(rgb, size=256).crop_box
    assert abs(x0 - 100) <= 2 and abs(y1 - 300) <= 2


def test_sliver_in_a_cutout_alpha_is_dropped_too() -> None:
    cutout = mug_cutout()
    cutout[0:6, 300:400, :] = (200, 200, 200, 255)  # a strip of background the cut-out tool left
    found = object_mask(cutout)
    assert not found.mask[0:6].any() and found.alpha[0:6].max() == 0
    assert found.mask[200, 180]


def test_a_part_that_does_not_touch_the_border_is_kept() -> None:
    """Only border slivers go: a small separate piece inside the frame is still object."""
    cutout = mug_cutout()
    cutout[40:60, 40:60] = (60, 110, 170, 255)
    found = object_mask(on_gradient(cutout))
    assert found.mask[50, 50]


def test_an_outline_lost_in_the_backdrop_asks_for_a_cutout() -> None:
    """A pale object on a pale sweep: its outline is within the keying noise, so instead of a
    wrong silhouette the job fails with one sentence asking for a cut-out."""
    cutout = mug_cutout()
    cutout[..., :3] = (222, 220, 216)  # off-white mug: off the sweep by more than its noise, within the key
    cutout[150:250, 130:230, :3] = (60, 110, 170)  # a printed label in the middle
    with pytest.raises(PipelineError) as err:
        object_mask(on_gradient(cutout, top=245.0, bottom=215.0))
    assert err.value.code == "bad_image"
    message = str(err.value)
    assert CUTOUT_HINT in message and "\n" not in message and message.count(";") == 1

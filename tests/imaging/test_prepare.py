"""Reference preparation: cut-out, crop, recentre, scale; clear errors for unusable images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inference_server.imaging.prepare import prepare_reference
from inference_server.imaging.segment import object_mask
from inference_server.pipeline.base import PipelineError


def _disk_rgba(size: int = 400, radius: float = 80.0, centre: tuple[float, float] = (150.0, 220.0)) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx + 0.5 - centre[0], yy + 0.5 - centre[1])
    img = np.zeros((size, size, 4), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 30, 160, 90
    img[..., 3] = (np.clip(radius + 0.5 - r, 0, 1) * 255).astype(np.uint8)  # anti-aliased edge
    return img


def _on_backdrop(rgba: np.ndarray, colour: tuple[int, int, int], noise: float, seed: int = 0) -> np.ndarray:
    """Flatten a cut-out onto an opaque backdrop with sensor-like noise (no alpha left)."""
    rng = np.random.default_rng(seed)
    a = rgba[..., 3:4].astype(np.float32) / 255
    rgb = rgba[..., :3] * a + np.asarray(colour, np.float32) * (1 - a) + rng.normal(0, noise, rgba.shape[:2] + (3,))
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def test_alpha_disk_is_cropped_centred_and_fills_95_percent() -> None:
    out = prepare_reference(_disk_rgba(), size=512)
    assert out.rgba.shape == (512, 512, 4) and out.rgba.dtype == np.uint8
    assert out.mask.shape == (512, 512) and out.mask.dtype == bool
    assert out.mask_source == "alpha"
    rows = np.flatnonzero(out.mask.any(axis=1))
    cols = np.flatnonzero(out.mask.any(axis=0))
    # The 161-px-wide disk (anti-aliased to 160 px of alpha >= 128) scaled to 0.95 * 512 = 486 px.
    assert abs((cols[-1] - cols[0] + 1) - 0.95 * 512) <= 3
    assert abs((rows[-1] - rows[0] + 1) - 0.95 * 512) <= 3
    # Centred: equal margins within a pixel.
    assert abs(cols[0] - (511 - cols[-1])) <= 1 and abs(rows[0] - (511 - rows[-1])) <= 1
    x0, y0, x1, y1 = out.crop_box
    assert (x0, y0) == (70, 140) and (x1 - x0, y1 - y0) == (160, 160)
    assert out.scale == pytest.approx(0.95 * 512 / 160)
    # Composited over white outside the object, object colour inside.
    assert tuple(out.rgba[5, 5, :3]) == (255, 255, 255) and out.rgba[5, 5, 3] == 0
    assert tuple(out.rgba[256, 256]) == (30, 160, 90, 255)


@pytest.mark.parametrize("channels", [3, 4])
def test_large_photo_is_reduced_first_but_reports_source_coordinates(channels: int, monkeypatch: pytest.MonkeyPatch) -> None:
    img = np.full((3000, 4000, channels), 250, np.uint8)
    img[..., 3:] = 0
    img[1000:2000, 1500:2500] = (20, 30, 200, 255)[:channels]
    import inference_server.imaging.prepare as prepare_module

    keyed_shapes: list[tuple[int, ...]] = []
    real_object_mask = prepare_module.object_mask

    def counting_object_mask(rgba: np.ndarray):  # type: ignore[no-untyped-def]
        keyed_shapes.append(rgba.shape)
        return real_object_mask(rgba)

    monkeypatch.setattr(prepare_module, "object_mask", counting_object_mask)
    out = prepare_reference(img)
    # The work is bounded by the canvas, not the photo: keying sees at most a 2048-px reduction.
    assert len(keyed_shapes) == 1 and max(keyed_shapes[0][:2]) <= 2048
    assert out.source_size == (4000, 3000)
    assert out.crop_box == (1500, 1000, 2500, 2000)
    assert out.scale == pytest.approx(0.95 * 1024 / 1000, rel=1e-3)
    assert abs(int(out.mask.sum()) - round(0.95 * 1024) ** 2) < 4 * 0.95 * 1024


def test_wide_object_fills_width_and_is_padded_square() -> None:
    img = np.zeros((120, 300, 4), np.uint8)
    img[40:60, 20:280] = (200, 10, 10, 255)  # a 260 x 20 bar
    out = prepare_reference(img, size=256)
    cols = np.flatnonzero(out.mask.any(axis=0))
    rows = np.flatnonzero(out.mask.any(axis=1))
    assert abs(len(cols) - 0.95 * 256) <= 1
    assert abs(len(rows) - 20 * 0.95 * 256 / 260) <= 1
    assert abs(rows.mean() - 127.5) <= 1


@pytest.mark.parametrize("background", [(255, 255, 255), (40, 40, 40), (20, 90, 200)])
def test_plain_background_is_keyed_without_alpha(background: tuple[int, int, int]) -> None:
    cutout = _disk_rgba()
    truth = cutout[..., 3] >= 128
    rgb = _on_backdrop(cutout, background, noise=3.0)
    found = object_mask(rgb)
    assert found.source == "keyed"
    iou = (found.mask & truth).sum() / (found.mask | truth).sum()
    assert iou > 0.98
    out = prepare_reference(rgb, size=256)
    assert out.mask_source == "keyed" and out.mask.sum() > 0.6 * np.pi * (0.95 * 128) ** 2


def test_vignetted_jpeg_backdrop_and_a_light_object() -> None:
    """A studio shot: backdrop darkening towards the corners, JPEG artefacts, an off-white object."""
    cutout = _disk_rgba()
    cutout[..., :3] = (235, 225, 205)
    truth = cutout[..., 3] >= 128
    yy, xx = np.mgrid[0:400, 0:400]
    backdrop = (255 - 45 * (np.hypot(xx - 200, yy - 200) / 283) ** 2)[..., None]
    a = cutout[..., 3:4] / 255
    rgb = np.clip(cutout[..., :3] * a + backdrop * (1 - a), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=75)
    found = object_mask(np.asarray(Image.open(buf)))
    assert (found.mask & truth).sum() / (found.mask | truth).sum() > 0.98


def test_paint_close_to_the_background_inside_the_outline_stays_object() -> None:
    """A light-grey window enclosed by the object is within the keying tolerance of the white
    backdrop (22.5 < 24) but not the backdrop itself: it is paint, and stays part of the object."""
    img = np.full((200, 200, 3), 255, np.uint8)
    img[50:150, 50:150] = (10, 10, 120)
    img[80:120, 80:120] = 242
    found = object_mask(img)
    assert found.mask[100, 100] and found.mask[60, 60] and not found.mask[10, 10]


def test_backdrop_seen_through_an_enclosed_opening_is_a_hole() -> None:
    """A mug handle on a white JPEG: the white inside the loop is the backdrop, so it is cut out."""
    img = Image.new("RGB", (400, 400), (250, 250, 248))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle([110, 110, 260, 320], radius=15, fill=(40, 90, 170))
    draw.ellipse([235, 165, 320, 260], outline=(40, 90, 170), width=19)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    found = object_mask(np.asarray(Image.open(buf)))
    assert not found.mask[212, 280]  # the opening inside the handle
    assert found.mask[212, 310] and found.mask[200, 180]  # the handle's far side and the body
    assert not found.mask[20, 20]


def _code(exc: pytest.ExceptionInfo[PipelineError]) -> str:
    return exc.value.code


def test_all_transparent_is_bad_image() -> None:
    img = np.zeros((64, 64, 4), np.uint8)
    with pytest.raises(PipelineError, match="transparent") as exc:
        prepare_reference(img)
    assert _code(exc) == "bad_image"


@pytest.mark.parametrize("shape", [(1, 1, 4), (1, 1, 3), (4, 300, 4)])
def test_too_small_images_are_bad_image(shape: tuple[int, ...]) -> None:
    with pytest.raises(PipelineError, match="at least") as exc:
        prepare_reference(np.full(shape, 128, np.uint8))
    assert _code(exc) == "bad_image"


def test_plain_background_without_object_is_bad_image() -> None:
    rgb = _on_backdrop(np.zeros((128, 128, 4), np.uint8), (250, 250, 250), noise=2.0)
    with pytest.raises(PipelineError, match="no object") as exc:
        prepare_reference(rgb)
    assert _code(exc) == "bad_image"


def test_busy_background_asks_for_transparency() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    rgb[60:140, 60:140] = (255, 0, 0)
    with pytest.raises(PipelineError, match="transparent background") as exc:
        prepare_reference(rgb)
    assert _code(exc) == "bad_image"


def test_object_filling_the_frame_is_bad_image() -> None:
    """A photo whose object runs off every edge has no background to key."""
    yy, xx = np.mgrid[0:128, 0:128]
    rgb = np.stack([xx * 2, yy * 2, np.full_like(xx, 128)], axis=-1).astype(np.uint8)  # smooth gradient
    rgb[:, :8] = 255
    with pytest.raises(PipelineError) as exc:
        prepare_reference(rgb)
    assert _code(exc) == "bad_image"


def test_tiny_alpha_speck_is_bad_image() -> None:
    img = np.zeros((64, 64, 4), np.uint8)
    img[10:12, 10:12] = 255
    with pytest.raises(PipelineError, match="too small") as exc:
        prepare_reference(img)
    assert _code(exc) == "bad_image"


@pytest.mark.parametrize("bad", [np.zeros((32, 32), np.uint8), np.zeros((32, 32, 4), np.float32), "png"])
def test_wrong_array_kinds_are_bad_image(bad: object) -> None:
    with pytest.raises(PipelineError) as exc:
        prepare_reference(bad)  # type: ignore[arg-type]
    assert _code(exc) == "bad_image"

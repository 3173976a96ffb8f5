"""decode_image: PNG/JPEG/WebP only, size checked before decoding, one sentence naming the image."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from inference_server.imaging.decode import ImageError, declared_size, decode_image
from inference_server.pipeline.base import PipelineError

from .test_hostile_input import bomb_png


def encoded(fmt: str, mode: str = "RGB", size: tuple[int, int] = (40, 30), **kw: object) -> bytes:
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("PNG", "P"),
                                           ("JPEG", "RGB"), ("WEBP", "RGB"), ("WEBP", "RGBA")])
def test_formats_decode_to_rgba(fmt: str, mode: str) -> None:
    out = decode_image(encoded(fmt, mode))
    assert out.shape == (30, 40, 4) and out.dtype == np.uint8 and out.flags.writeable


@pytest.mark.parametrize(("fmt", "kw"), [("PNG", {}), ("JPEG", {}), ("WEBP", {"lossless": True}), ("WEBP", {})])
def test_declared_size_reads_headers(fmt: str, kw: dict) -> None:
    assert declared_size(encoded(fmt, size=(123, 45), **kw), fmt) == (123, 45)


def test_alpha_and_values_survive() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[2:6, 2:6] = (10, 20, 30, 255)
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    np.testing.assert_array_equal(decode_image(buf.getvalue()), rgba)


def test_16_bit_grey_keeps_the_top_byte() -> None:
    arr = np.full((4, 4), 0xABCD, dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    out = decode_image(buf.getvalue())
    assert out[0, 0].tolist() == [0xAB, 0xAB, 0xAB, 255]


def test_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(ImageError) as info:
        decode_image(bomb_png(30_000, 30_000), name="bomb.png")
    assert str(info.value) == "bomb.png is 30000x30000 pixels (900.0 Mpx); the limit is 16.8 Mpx."
    assert info.value.code == "bad_image" and isinstance(info.value, PipelineError)


def test_pixel_cap_is_configurable() -> None:
    with pytest.raises(ImageError, match="the limit is 0.0 Mpx"):
        decode_image(encoded("PNG"), max_pixels=100)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "x.png is empty."),
    (b"GIF89a" + b"\0" * 40, "x.png is not a PNG, JPEG or WebP file."),
    (b"BM" + b"\0" * 60, "x.png is not a PNG, JPEG or WebP file."),
])
def test_refusals_are_one_sentence(data: bytes, message: str) -> None:
    with pytest.raises(ImageError) as info:
        decode_image(data, name="x.png")
    assert str(info.value) == message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_and_corrupt_files(fmt: str) -> None:
    data = encoded(fmt, size=(64, 64))
    for broken in (data[: len(data) // 2], data[:20] + b"\x00" * (len(data) - 20)):
        with pytest.raises(ImageError, match=r"^img could not be (read|decoded) as"):
            decode_image(broken, name="img")


def test_png_with_zero_width_is_refused() -> None:
    data = bytearray(encoded("PNG"))
    data[16:20] = struct.pack(">I", 0)
    with pytest.raises(ImageError):
        decode_image(bytes(data))

"""Header-only image checks at submit: they never refuse what Pillow can decode, and say what decode_image says.

The server's event loop refuses what is cheap to see from the headers; everything
else is decoded by the worker (decode_image runs the same header checks first).
These tests pin the contract between the two.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from inference_server.imaging.decode import ImageError, check_encoded_image, decode_image, jpeg_scan_count

from .test_hostile_input import bomb_png, corrupt_png_pixels, scan_bomb_jpeg

MAX_PIXELS = 1_000_000


def encoded(fmt: str, size: tuple[int, int] = (48, 40), mode: str = "RGB", **kw: object) -> bytes:
    rng = np.random.default_rng(2)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


GOOD = {
    "png": encoded("PNG"),
    "png-rgba": encoded("PNG", mode="RGBA"),
    "png-palette": encoded("PNG", mode="P"),
    "jpeg": encoded("JPEG"),
    "jpeg-progressive": encoded("JPEG", progressive=True),
    "jpeg-restart-markers": encoded("JPEG", size=(96, 80), restart_marker_blocks=1),
    "jpeg-progressive-restart-markers": encoded("JPEG", size=(96, 80), progressive=True, restart_marker_blocks=1),
    "webp": encoded("WEBP"),
    "webp-lossless": encoded("WEBP", lossless=True),
}


def damaged(data: bytes) -> list[bytes]:
    """Cut at many places and overwritten in a few: what a broken upload looks like."""
    n = len(data)
    cuts = sorted({1, 2, 3, 8, 12, 16, 20, 24, 30, 40, 60, 100, 200, n // 4, n // 2} | set(range(n - 16, n)))
    out = [data[:c] for c in cuts if 0 < c < n]
    for start in (12, 20, 40, n // 3, n // 2):
        out.append(data[:start] + bytes(16) + data[start + 16 :])
        out.append(data[:start] + b"\xff" * 16 + data[start + 16 :])
    return out


def refusal(fn: Callable[[bytes], object], data: bytes) -> str | None:
    try:
        fn(data)
    except ImageError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_images_pass_the_header_check(name: str) -> None:
    check_encoded_image(memoryview(GOOD[name]), MAX_PIXELS, name)
    assert decode_image(GOOD[name], max_pixels=MAX_PIXELS).shape[2] == 4


@pytest.mark.parametrize("name", sorted(GOOD))
def test_what_the_header_check_refuses_does_not_decode_either(name: str) -> None:
    def pillow_decodes(data: bytes) -> bool:  # Pillow alone, without any of our checks
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
            return True
        except Exception:  # noqa: BLE001 - any failure means "does not decode"
            return False

    refused = 0
    for data in damaged(GOOD[name]):
        at_submit = refusal(lambda d: check_encoded_image(memoryview(d), MAX_PIXELS, "img"), data)
        if at_submit is not None:
            refused += 1
            assert not pillow_decodes(data), f"refused at submit but decodes: {at_submit}"
    assert refused > 0  # and it does refuse the obvious ones (cut before the size is known, ...)


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a" + bytes(40), b"not an image", bomb_png(40_000, 40_000), encoded("PNG", size=(1100, 1000)),
     scan_bomb_jpeg(64, 600), GOOD["png"][:60]],
    ids=["empty", "gif", "text", "bomb", "over-limit", "scan-bomb", "png-cut-in-idat"],
)
def test_header_refusals_say_what_decode_image_says(data: bytes) -> None:
    at_submit = refusal(lambda d: check_encoded_image(memoryview(d), MAX_PIXELS, "front.png"), data)
    assert at_submit is not None
    assert at_submit == refusal(lambda d: decode_image(d, max_pixels=MAX_PIXELS, name="front.png"), data)


def test_pixel_damage_passes_the_header_check_and_fails_in_the_worker() -> None:
    data = corrupt_png_pixels()
    check_encoded_image(memoryview(data), MAX_PIXELS, "front.png")
    assert refusal(lambda d: decode_image(d, name="front.png"), data) == (
        "front.png could not be decoded as PNG: the file is corrupt or truncated."
    )


@pytest.mark.parametrize(
    "data",
    [GOOD["jpeg"], GOOD["jpeg-progressive"], GOOD["jpeg-restart-markers"], GOOD["jpeg-progressive-restart-markers"],
     scan_bomb_jpeg(64, 40), scan_bomb_jpeg(64, 600), b"\xff\xd8\xff\xff\xff\xd9",
     b"\xff\xd8\xff\xda\x00\x02\xff\x00\xff\xff"]
    + damaged(GOOD["jpeg-progressive-restart-markers"]),
)
def test_fast_jpeg_scan_count_matches_the_reference(data: bytes) -> None:
    for stop_after in (3, 500):
        assert jpeg_scan_count(memoryview(data), stop_after) == reference_scan_count(data, stop_after)


def reference_scan_count(data: bytes, stop_after: int) -> int:
    """The plain marker walk, one byte at a time: the oracle for the regex-skipping counter."""
    i, n, scans = 2, len(data), 0
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker != 0xDA:
            continue
        scans += 1
        if scans > stop_after:
            break
        while True:  # entropy-coded data: 0xFF is followed by a stuffed 0x00, a restart marker or a fill byte
            i = data.find(b"\xff", i)
            if i < 0 or i + 1 >= n:
                return scans
            nxt = data[i + 1]
            if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
                i += 2
            elif nxt == 0xFF:
                i += 1
            else:
                break
    return scans

"""Decode untrusted reference images: PNG, JPEG and WebP only, with a pixel cap checked before decoding.

Images arrive from the network. Pillow trusts a file's declared size, so a
47 KiB PNG can ask for a 400-megapixel buffer; we read the declared size from
the header first and refuse anything above ``max_pixels`` without decoding.
Every failure is one :class:`ImageError` sentence that names the image.
"""

from __future__ import annotations

import io
import re
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps

from ..pipeline.base import PipelineError

DEFAULT_MAX_PIXELS = 16_777_216
Encoded = bytes | bytearray | memoryview

MAX_JPEG_SCANS = 500  # progressive encoders write about 10; each scan costs a full pass over the image


class ImageError(PipelineError):
    """An input image was refused; the message names it and says why.

    A thin subclass because the server's intake catches this family (to refuse a submit at once).
    """

    default_code = "bad_image"


def sniff_format(data: bytes | memoryview) -> str | None:
    """Format from the magic bytes, so Pillow never tries its other (larger attack surface) decoders."""
    head = bytes(data[:16])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def declared_size(data: bytes | memoryview, fmt: str) -> tuple[int, int] | None:
    """(width, height) from the file header alone, before Pillow sees the file.

    Pillow refuses some bombs itself in ``open()`` with a message that loses the
    size; reading it here gives every oversize image the same clear refusal.
    None when the header is too damaged to say (Pillow will then fail on it).
    """
    head = bytes(data[: 1 << 16])
    try:
        if fmt == "PNG":
            if head[12:16] != b"IHDR":
                return None
            return struct.unpack(">II", head[16:24])  # type: ignore[return-value]
        if fmt == "WEBP":
            chunk = head[12:16]
            if chunk == b"VP8X":
                w = int.from_bytes(head[24:27], "little") + 1
                h = int.from_bytes(head[27:30], "little") + 1
                return w, h
            if chunk == b"VP8L":
                bits = int.from_bytes(head[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", head[26:30])
                return w & 0x3FFF, h & 0x3FFF
            return None
        if fmt == "JPEG":
            i = 2
            while i + 9 < len(head):
                if head[i] != 0xFF:
                    return None
                marker = head[i + 1]
                if marker == 0xFF:  # fill byte
                    i += 1
                    continue
                (length,) = struct.unpack(">H", head[i + 2 : i + 4])
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                    h, w = struct.unpack(">HH", head[i + 5 : i + 9])
                    return w, h
                i += 2 + length
            return None
    except struct.error:
        return None
    return None


def _check_pixels(width: int, height: int, max_pixels: int, name: str) -> None:
    if width * height > max_pixels:
        raise ImageError(
            f"{name} is {width}x{height} pixels ({width * height / 1e6:.1f} Mpx); "
            f"the limit is {max_pixels / 1e6:.1f} Mpx."
        )


class _ViewReader:
    """A read-only, seekable file over a buffer, without copying it (for Pillow's header parsing)."""

    def __init__(self, data: Encoded) -> None:
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(self._pos + size, len(self._view))
        out = bytes(self._view[self._pos : end])
        self._pos = max(self._pos, end)
        return out

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


# The end of a JPEG scan's entropy-coded data: 0xFF followed by a marker (not a stuffed 0x00, a
# restart marker or a fill byte).
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_scan_count(data: Encoded, stop_after: int) -> int:
    """Scans (SOS segments) in a JPEG, counted from its markers; stops once past ``stop_after``.

    libjpeg makes a full pass over the image for every scan of a progressive JPEG and sets no
    limit, so a small file of repeated tiny scans can keep the decoder busy for minutes. The
    entropy-coded data is skipped with a regex, not a Python loop: this runs on the server's
    event loop for every JPEG submitted, reading the received frame in place.
    """
    view = memoryview(data).cast("B")
    i, n, scans = 2, len(view), 0
    while i + 4 <= n and view[i] == 0xFF:
        marker = view[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            i += 2
            continue
        i += 2 + int.from_bytes(view[i + 2 : i + 4], "big")
        if marker != 0xDA:
            continue
        scans += 1
        if scans > stop_after:
            break
        end = _SCAN_END.search(view, i)
        if end is None:
            return scans
        i = end.start()
    return scans


def _png_chunk_cut(data: memoryview) -> bool:
    """Whether a PNG chunk before IEND claims more bytes than the file has (a truncated upload).

    Reads only the chunk headers (a few per 64 KiB of image data). Pillow fails to decode every
    such file. Files that end inside a chunk header (a cut IEND decodes) or lack IEND are left to
    the decoder.
    """
    i, n = 8, len(data)
    while i + 8 <= n:
        length = int.from_bytes(data[i : i + 4], "big")
        if data[i + 4 : i + 8] == b"IEND":
            return False
        if i + 8 + length > n:
            return True
        i += 12 + length
    return False


def check_encoded_image(data: Encoded, max_pixels: int, name: str) -> None:
    """Refuse what is cheap to recognise from the file's headers, without decoding any pixel.

    Raises ImageError with the same sentences decode_image uses: empty, not PNG/JPEG/WebP,
    too many JPEG scans, over the pixel limit (declared size or Pillow's bomb check), no pixels,
    unreadable headers, a PNG cut short. What passes may still fail to decode (corrupt pixel
    data). The server runs this at submit (it never decodes pixels on its event loop).
    """
    view = memoryview(data).cast("B")
    if not len(view):
        raise ImageError(f"{name} is empty.")
    fmt = sniff_format(view)
    if fmt is None:
        raise ImageError(f"{name} is not a PNG, JPEG or WebP file.")
    if fmt == "JPEG" and jpeg_scan_count(view, MAX_JPEG_SCANS) > MAX_JPEG_SCANS:
        raise ImageError(f"{name} has more than {MAX_JPEG_SCANS} JPEG scans; real photos have a few dozen at most.")
    size = declared_size(view, fmt)
    if size is not None:
        _check_pixels(size[0], size[1], max_pixels, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # Pillow's open() parses headers only; pixels are decoded by load(), which the worker calls.
            with Image.open(_ViewReader(view), formats=[fmt]) as img:  # type: ignore[arg-type]
                width, height = img.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{name} declares too many pixels (a decompression bomb?); the limit is "
                             f"{max_pixels / 1e6:.1f} Mpx.") from None
        except Exception:  # noqa: BLE001 - whatever Pillow raises on a damaged header, it is one refusal
            raise ImageError(f"{name} could not be read as {fmt}: the file is corrupt or truncated.") from None
    if width <= 0 or height <= 0:
        raise ImageError(f"{name} has no pixels.")
    _check_pixels(width, height, max_pixels, name)
    if fmt == "PNG" and _png_chunk_cut(view):
        raise ImageError(f"{name} could not be decoded as PNG: the file is corrupt or truncated.")


def _to_rgba(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: keep the top 8 bits instead of Pillow's clipping convert().
        grey = (np.asarray(img, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        rgba = np.empty(grey.shape + (4,), dtype=np.uint8)
        rgba[..., :3] = grey[..., None]
        rgba[..., 3] = 255
        return rgba
    if img.mode != "RGBA":
        img = img.convert("RGBA")  # palettes with transparency become real alpha here
    return np.array(img, dtype=np.uint8)  # a copy: the array must outlive Pillow's buffer


def decode_image(data: Encoded, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image") -> np.ndarray:
    """Decode PNG/JPEG/WebP bytes to an (H, W, 4) uint8 RGBA array, or raise ImageError."""
    check_encoded_image(data, max_pixels, name)  # every refusal that needs no pixel decoded
    fmt = sniff_format(memoryview(data).cast("B"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(_ViewReader(data), formats=[fmt])  # type: ignore[arg-type, list-item]
        except Exception:  # noqa: BLE001 - the header checks passed; anything now is a damaged file
            raise ImageError(f"{name} could not be read as {fmt}: the file is corrupt or truncated.") from None
        try:
            img.load()  # full decode inside the try: truncated data fails here, not later
            # Phone photos carry their rotation in EXIF.
            upright: Image.Image = ImageOps.exif_transpose(img) if fmt == "JPEG" else img
            rgba = _to_rgba(upright)
        except MemoryError:
            raise ImageError(f"{name} is too large to decode in the available memory.") from None
        except Exception:
            raise ImageError(f"{name} could not be decoded as {fmt}: the file is corrupt or truncated.") from None
        finally:
            img.close()
    if rgba.ndim != 3 or rgba.shape[2] != 4:  # pragma: no cover - convert("RGBA") guarantees this
        raise ImageError(f"{name} decoded to an unexpected shape {rgba.shape}.")
    return rgba


__all__ = ["Encoded", "ImageError", "check_encoded_image", "decode_image", "declared_size",
           "jpeg_scan_count", "sniff_format"]

"""A minimal PNG encoder (zlib only): Blender ships no Pillow.

Used for reference images that exist only inside the .blend (generated or
edited, never saved): their pixels are encoded here and sent like a file.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np


def encode_png(rgba: np.ndarray, *, level: int = 6) -> bytes:
    """(H, W, 4) or (H, W, 3) uint8, top row first -> PNG bytes."""
    img = np.ascontiguousarray(rgba, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError("expected an (H, W, 3|4) uint8 image")
    height, width, channels = img.shape
    colour_type = 6 if channels == 4 else 2
    # Filter type 0 (None) on every row: prepend a zero byte to each scanline.
    raw = np.zeros((height, width * channels + 1), dtype=np.uint8)
    raw[:, 1:] = img.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)),
            _chunk(b"IEND", b""),
        ]
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def float_pixels_to_rgba8(pixels: np.ndarray, width: int, height: int, channels: int) -> np.ndarray:
    """Blender's ``Image.pixels`` (floats 0..1, bottom row first) -> (H, W, 4) uint8 top row first."""
    values = np.asarray(pixels, dtype=np.float32).reshape(height, width, channels)
    arr = np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8)[::-1]
    if channels == 4:
        return arr
    out = np.full((height, width, 4), 255, dtype=np.uint8)
    out[:, :, : min(channels, 3)] = arr[:, :, :3]
    return out

"""Reference image-space dilation (numpy, the test oracle)."""

from __future__ import annotations

import numpy as np

OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def dilate(texture: np.ndarray, known: np.ndarray, passes: int) -> tuple[np.ndarray, np.ndarray]:
    """``passes`` rounds: each unknown texel with known 8-neighbours takes their mean (float32 sum in
    the fixed order of ``OFFSETS``). Returns the new texture and known mask."""
    tex = np.asarray(texture, np.float32).copy()
    known = np.asarray(known, bool).copy()
    h, w = known.shape
    for _ in range(passes):
        pad_t = np.pad(tex, ((1, 1), (1, 1), (0, 0)))
        pad_k = np.pad(known, 1)
        total = np.zeros_like(tex)
        count = np.zeros((h, w), np.float32)
        for dy, dx in OFFSETS:
            k = pad_k[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            total += np.where(k[:, :, None], pad_t[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w], np.float32(0))
            count += k
        grow = ~known & (count > 0)
        if not grow.any():
            break
        tex[grow] = total[grow] / count[grow][:, None]
        known |= grow
    return tex, known

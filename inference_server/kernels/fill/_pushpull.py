"""Push-pull fill: every unknown texel gets the mask-weighted mean of its neighbourhood at the
finest scale that has data. O(N) and vectorised; it fills arbitrarily wide gaps (the whole
atlas background) with values that match the charts' colours at every mip level."""

from __future__ import annotations

import numpy as np


def push_pull(texture: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(H, W, C) float32 with every texel defined; known texels keep their values."""
    tex = np.asarray(texture, np.float32)
    if known.all() or not known.any():
        return tex.copy() if known.any() else np.zeros_like(tex)
    # Pull: halve resolution summing colour*weight and weight over 2x2 blocks.
    levels: list[tuple[np.ndarray, np.ndarray]] = []
    col = tex * known[:, :, None]
    wt = known.astype(np.float32)
    while True:
        levels.append((col, wt))
        h, w = wt.shape
        if h == 1 and w == 1:
            break
        ph, pw = h + (h & 1), w + (w & 1)
        if (ph, pw) != (h, w):  # odd sizes: pad with zero weight
            col = np.pad(col, ((0, ph - h), (0, pw - w), (0, 0)))
            wt = np.pad(wt, ((0, ph - h), (0, pw - w)))
        col = col.reshape(ph // 2, 2, pw // 2, 2, -1).sum(axis=(1, 3))
        wt = wt.reshape(ph // 2, 2, pw // 2, 2).sum(axis=(1, 3))
    # Push: from the coarsest level down, unknown texels take the coarser level's mean.
    top_col, top_wt = levels[-1]
    filled = top_col / np.maximum(top_wt, 1e-12)[:, :, None]
    for lcol, lwt in reversed(levels[:-1]):
        lh, lw = lwt.shape
        up = np.repeat(np.repeat(filled, 2, axis=0), 2, axis=1)[:lh, :lw]
        have = lwt > 0
        filled = np.where(have[:, :, None], lcol / np.where(have, lwt, 1.0)[:, :, None], up)
    out = filled.astype(np.float32)
    out[known] = tex[known]
    return out

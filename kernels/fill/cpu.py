"""CPU image-space dilation: numba, rows in parallel, double-buffered so each pass reads the previous one."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def _dilate_pass(tex, known, out, out_known):  # type: ignore[no-untyped-def]
    h, w, nch = tex.shape
    grew = np.zeros(h, np.int64)
    for y in prange(h):
        for x in range(w):
            out_known[y, x] = known[y, x]
            if known[y, x]:
                for k in range(nch):
                    out[y, x, k] = tex[y, x, k]
                continue
            cnt = 0
            for k in range(nch):
                out[y, x, k] = 0.0
            # Same neighbour order as the reference, so float32 sums match exactly.
            for dy in range(-1, 2):
                yy = y + dy
                if yy < 0 or yy >= h:
                    continue
                for dx in range(-1, 2):
                    xx = x + dx
                    if (dy == 0 and dx == 0) or xx < 0 or xx >= w or not known[yy, xx]:
                        continue
                    cnt += 1
                    for k in range(nch):
                        out[y, x, k] += tex[yy, xx, k]
            if cnt > 0:
                for k in range(nch):
                    out[y, x, k] = out[y, x, k] / np.float32(cnt)
                out_known[y, x] = True
                grew[y] += 1
    return grew.sum()


def dilate(texture: np.ndarray, known: np.ndarray, passes: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.ascontiguousarray(texture, np.float32).copy()
    ka = np.ascontiguousarray(known, bool).copy()
    b, kb = np.empty_like(a), np.empty_like(ka)
    for _ in range(passes):
        if _dilate_pass(a, ka, b, kb) == 0:
            break
        a, b, ka, kb = b, a, kb, ka
    return a, ka

"""CPU image-space fill: numba.

- ``dilate``: frontier-based, so a pass costs the number of texels it grows, not the image size.
  Each pass reads the state left by the previous one (same result as the reference).
- ``push_pull``: the pyramid of ``_pushpull`` in two parallel kernels per level.
- ``vertex_colours``: the texel-to-vertex splat of ``_mesh.vertex_colours`` in one serial pass.
"""

from __future__ import annotations

import numpy as np

from ..jit import njit, prange


@njit(cache=True)
def _dilate(tex, known, passes):  # type: ignore[no-untyped-def]
    h, w, nch = tex.shape
    queued = np.zeros((h, w), np.bool_)
    n = 0
    cand = np.empty(1024, np.int64)
    for y in range(h):  # unknown texels touching a known one
        for x in range(w):
            if known[y, x]:
                continue
            hit = False
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and known[yy, xx]:
                        hit = True
            if hit:
                if n == cand.size:
                    cand = np.concatenate((cand, np.empty(cand.size, np.int64)))
                cand[n] = y * w + x
                queued[y, x] = True
                n += 1
    for _ in range(passes):
        if n == 0:
            break
        vals = np.zeros((n, nch), np.float32)
        for i in range(n):
            y, x = cand[i] // w, cand[i] % w
            cnt = 0
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
                        vals[i, k] += tex[yy, xx, k]
            for k in range(nch):
                vals[i, k] = vals[i, k] / np.float32(cnt)
        for i in range(n):
            y, x = cand[i] // w, cand[i] % w
            for k in range(nch):
                tex[y, x, k] = vals[i, k]
            known[y, x] = True
        nxt = np.empty(8 * n, np.int64)
        m = 0
        for i in range(n):  # every unknown neighbour of a grown texel grows next pass
            y, x = cand[i] // w, cand[i] % w
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and not known[yy, xx] and not queued[yy, xx]:
                        queued[yy, xx] = True
                        nxt[m] = yy * w + xx
                        m += 1
        cand = nxt
        n = m


def dilate(texture: np.ndarray, known: np.ndarray, passes: int) -> tuple[np.ndarray, np.ndarray]:
    tex = np.ascontiguousarray(texture, np.float32).copy()
    k = np.ascontiguousarray(known, np.bool_).copy()
    _dilate(tex, k, passes)
    return tex, k


@njit(cache=True, parallel=True)
def _pull_first(tex, known, col, wt):  # type: ignore[no-untyped-def]
    h, w, nch = tex.shape
    for y2 in prange(col.shape[0]):
        for x2 in range(col.shape[1]):
            for y in range(2 * y2, min(2 * y2 + 2, h)):
                for x in range(2 * x2, min(2 * x2 + 2, w)):
                    if known[y, x]:
                        wt[y2, x2] += 1.0
                        for k in range(nch):
                            col[y2, x2, k] += tex[y, x, k]


# The coarser levels are small and many: serial kernels there, as a parallel region's start-up
# (and, on a busy machine, its wait for a second core) costs more than the work.
@njit(cache=True)
def _pull(c_in, w_in, col, wt):  # type: ignore[no-untyped-def]
    h, w, nch = c_in.shape
    for y2 in range(col.shape[0]):
        for x2 in range(col.shape[1]):
            for y in range(2 * y2, min(2 * y2 + 2, h)):
                for x in range(2 * x2, min(2 * x2 + 2, w)):
                    wt[y2, x2] += w_in[y, x]
                    for k in range(nch):
                        col[y2, x2, k] += c_in[y, x, k]


@njit(cache=True)
def _push(col, wt, coarse, out):  # type: ignore[no-untyped-def]
    h, w, nch = col.shape
    for y in range(h):
        for x in range(w):
            if wt[y, x] > 0:
                for k in range(nch):
                    out[y, x, k] = col[y, x, k] / wt[y, x]
            else:
                for k in range(nch):
                    out[y, x, k] = coarse[y // 2, x // 2, k]


@njit(cache=True, parallel=True)
def _push_first(tex, known, coarse, out):  # type: ignore[no-untyped-def]
    h, w, nch = tex.shape
    for y in prange(h):
        for x in range(w):
            for k in range(nch):
                out[y, x, k] = tex[y, x, k] if known[y, x] else coarse[y // 2, x // 2, k]


def push_pull(texture: np.ndarray, known: np.ndarray) -> np.ndarray:
    tex = np.ascontiguousarray(texture, np.float32)
    if not known.any():
        return np.zeros_like(tex)
    if known.all():
        return tex.copy()
    kn = np.ascontiguousarray(known, np.bool_)
    h, w, nch = tex.shape
    levels: list[tuple[np.ndarray, np.ndarray]] = []
    col = np.zeros(((h + 1) // 2, (w + 1) // 2, nch), np.float32)
    wt = np.zeros(col.shape[:2], np.float32)
    _pull_first(tex, kn, col, wt)
    levels.append((col, wt))
    while col.shape[0] > 1 or col.shape[1] > 1:
        c2 = np.zeros(((col.shape[0] + 1) // 2, (col.shape[1] + 1) // 2, nch), np.float32)
        w2 = np.zeros(c2.shape[:2], np.float32)
        _pull(col, wt, c2, w2)
        col, wt = c2, w2
        levels.append((col, wt))
    filled = levels[-1][0] / np.maximum(levels[-1][1], 1e-12)[:, :, None]
    for c, wgt in reversed(levels[:-1]):
        out = np.empty_like(c)
        _push(c, wgt, filled, out)
        filled = out
    out = np.empty_like(tex)
    _push_first(tex, kn, filled, out)
    return out


@njit(cache=True)
def _splat(texture, known, face_id, bary, faces, col, wsum):  # type: ignore[no-untyped-def]
    h, w, nch = texture.shape
    for y in range(h):
        for x in range(w):
            f = face_id[y, x]
            if f < 0 or not known[y, x]:
                continue
            for j in range(3):
                v = faces[f, j]
                b = np.float64(bary[y, x, j])
                wsum[v] += b
                for k in range(nch):
                    col[v, k] += b * texture[y, x, k]


def vertex_colours(
    texture: np.ndarray, known: np.ndarray, face_id: np.ndarray, bary: np.ndarray, faces: np.ndarray, vertex_count: int
) -> tuple[np.ndarray, np.ndarray]:
    col = np.zeros((vertex_count, texture.shape[2]), np.float64)
    wsum = np.zeros(vertex_count, np.float64)
    _splat(np.ascontiguousarray(texture, np.float32), np.ascontiguousarray(known), face_id, bary,
           np.ascontiguousarray(faces, np.int64), col, wsum)
    seen = wsum > 1e-6
    col[seen] /= wsum[seen, None]
    return col.astype(np.float32), seen

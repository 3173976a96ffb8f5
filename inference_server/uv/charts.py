"""Few, large UV charts: one per view direction a surface region faces, flattened conformally.

Why: xatlas grows many small charts (tens to a hundred on a 20k-face apple once the mesh is cut
into chunks), and every chart border is a seam the texture bleeds along. Our meshes are closed,
smooth solids textured by projecting reference views; the natural seams are where the surface turns
from facing one view direction to another (the front chart meets the back chart at the silhouette
rim, as the side charts do) and at creases. So faces are grouped by the axis direction (+-X, +-Y,
+-Z) their normal is closest to, split into edge-connected pieces, and pieces too small to be worth
a chart of their own join the neighbour they share most edges with when they face its way. Each
chart is flattened by least-squares conformal maps (LSCM, Levy et al. 2002: angles kept, two pinned
vertices); a chart LSCM would fold (or that is stretched beyond ``MAX_AREA_STRETCH``, as a cone's
side is near its apex) is cut in two and each half flattened again (``flatten_region``), and only
after ``SPLIT_DEPTH`` cuts falls back to its orthographic projection along its axis, which cannot
fold because every face it keeps faces that way; faces it leaves out go to xatlas. Small charts and
those left-over pieces then join a large neighbour when it still flattens cleanly (``atlas.py``).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.sparse.linalg import spsolve

from .partition import face_adjacency

AXES = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)
# A piece under this share of the faces joins a neighbour (when it faces the neighbour's way).
MIN_PIECE_SHARE = 0.01
# A small piece may join a neighbour chart when each of its faces faces that chart's axis at least
# this much (cosine): a thin band at a crease (the rim where front and back meet) joins a side.
MIN_FACING = -0.25  # LSCM flattens a little past 90 degrees; projection takes only faces facing the axis
# Pieces of at most this many faces are folds (a face turned over by decimation): they join their
# neighbour whatever way they face, and a chart tolerates them (they fold in any flattening).
FOLD_CRUMB_FACES = 3
# A face of a chart facing its axis less than this (cosine) is turned over (a fold decimation left):
# it folds in any flattening, so it leaves the chart.
TURNED_FACING = -0.5
# The projection fallback keeps faces facing the axis at least this much (a face seen at a grazing
# angle would get almost no texels).
PROJECTION_FACING = 0.2
# LSCM keeps angles; a chart whose area stretch (95th percentile, area-weighted, each face's texel
# share against the chart's mean) exceeds this is projected instead.
MAX_AREA_STRETCH = 2.0
# A region LSCM stretches beyond that is cut in two and each half flattened again, at most this
# many times deep (up to 2^depth charts), before the projection fallback; halves under
# MIN_SPLIT_FACES faces are not cut again.
SPLIT_DEPTH = 3
MIN_SPLIT_FACES = 64


def face_normals(positions: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals and areas per face (zero normal for a degenerate face)."""
    tri = positions[faces].astype(np.float64)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(n, axis=1)
    return n / np.maximum(length, 1e-30)[:, None], 0.5 * length


def _chain_ends(target: np.ndarray) -> np.ndarray:
    """Where each chain of merges (a -> target[a] -> ...) ends."""
    for _ in range(32):
        nxt = target[target]
        if np.array_equal(nxt, target):
            break
        target = nxt
    return target


def view_charts(positions: np.ndarray, faces: np.ndarray, min_share: float = MIN_PIECE_SHARE
                ) -> tuple[np.ndarray, np.ndarray]:
    """Chart id per face and each chart's axis (index into AXES)."""
    f = np.asarray(faces, dtype=np.int64)
    normals, areas = face_normals(positions, f)
    facing = normals @ AXES.T  # (M, 6)
    label = np.argmax(facing, axis=1)
    facing[areas <= 0] = 1.0  # a degenerate face faces nowhere: it may join any chart
    a, b = face_adjacency(f)
    m = len(f)

    def pieces(lab: np.ndarray) -> np.ndarray:
        same = lab[a] == lab[b]
        graph = sparse.coo_matrix((np.ones(int(same.sum()), np.int8), (a[same], b[same])), shape=(m, m))
        return csgraph.connected_components(graph, directed=False)[1]

    piece = pieces(label)
    min_faces = max(8, int(min_share * m))
    for _ in range(4):
        sizes = np.bincount(piece)
        axis_of = np.zeros(len(sizes), np.int64)
        axis_of[piece] = label
        cross = piece[a] != piece[b]
        src = np.concatenate([piece[a][cross], piece[b][cross]])
        dst = np.concatenate([piece[b][cross], piece[a][cross]])
        small = sizes[src] < min_faces
        if not small.any():
            break
        src, dst = src[small], dst[small]
        base = len(sizes)
        pairs, counts = np.unique(src * base + dst, return_counts=True)
        p_src, p_dst = pairs // base, pairs % base
        # Most shared edges first; a piece joins the first neighbour whose axis all its faces face.
        order = np.lexsort((-counts, p_src))
        worst = np.full((len(sizes), 6), np.inf)
        np.minimum.at(worst, piece, facing)  # per piece, the least any face faces each axis
        target = np.arange(len(sizes))
        for s, d in zip(p_src[order], p_dst[order]):
            crumb = sizes[s] <= FOLD_CRUMB_FACES  # a fold left by decimation: joins whatever surrounds it
            if target[s] == s and (crumb or worst[s, axis_of[d]] >= MIN_FACING) and not (target[d] == s):
                target[s] = d
        crumbs = sizes <= FOLD_CRUMB_FACES
        for _ in range(8):
            # Chains a -> b -> c end at c; a piece must face the chain end's way too (it was
            # checked against b's), else it stays (a chain through it now ends at it). Without
            # this, pieces turned away from their chart's axis joined it (a ball with a side
            # view: 700 faces, each a fold to xatlas).
            end = _chain_ends(target)
            bad = (end != np.arange(len(sizes))) & ~crumbs & (worst[np.arange(len(sizes)), axis_of[end]] < MIN_FACING)
            if not bad.any():
                break
            target[bad] = np.flatnonzero(bad)
        target = _chain_ends(target)
        merged = target[piece]
        if np.array_equal(merged, piece):
            break
        label = axis_of[merged]
        _, piece = np.unique(merged, return_inverse=True)
    _, piece = np.unique(piece, return_inverse=True)
    axis = np.zeros(int(piece.max()) + 1, np.int64)
    axis[piece] = label
    return piece, axis


def lscm(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Least-squares conformal parametrisation of one connected chart, (N, 2) uvs (any scale)."""
    p = positions.astype(np.float64)
    tri = p[faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    n = np.cross(e1, e2)
    area2 = np.linalg.norm(n, axis=1)  # twice the area
    ok = area2 > 1e-20 * max(float(area2.max()), 1e-30)
    x_axis = e1 / np.maximum(np.linalg.norm(e1, axis=1, keepdims=True), 1e-30)
    y_axis = np.cross(n / np.maximum(area2, 1e-30)[:, None], x_axis)
    # Local 2-D corners: (0, 0), (|e1|, 0), (e2.x, e2.y).
    local = np.zeros((len(faces), 3, 2))
    local[:, 1, 0] = np.linalg.norm(e1, axis=1)
    local[:, 2, 0] = (e2 * x_axis).sum(axis=1)
    local[:, 2, 1] = (e2 * y_axis).sum(axis=1)
    # W_j = (corner j+2 - corner j+1) as a complex number, scaled by 1/sqrt(2 A).
    w = np.roll(local, -2, axis=1) - np.roll(local, -1, axis=1)  # (M, 3, 2)
    w /= np.sqrt(np.maximum(area2, 1e-30))[:, None, None]
    w[~ok] = 0.0
    nv = len(p)
    rows_t = np.repeat(np.arange(len(faces)), 3)
    cols = faces.reshape(-1)
    wr, wi = w[..., 0].reshape(-1), w[..., 1].reshape(-1)
    # Real form of sum_j W_j (u_j + i v_j) = 0: [wr, -wi] and [wi, wr] against (u, v).
    m_rows = np.concatenate([2 * rows_t, 2 * rows_t, 2 * rows_t + 1, 2 * rows_t + 1])
    m_cols = np.concatenate([cols, nv + cols, cols, nv + cols])
    m_vals = np.concatenate([wr, -wi, wi, wr])
    matrix = sparse.csr_matrix((m_vals, (m_rows, m_cols)), shape=(2 * len(faces), 2 * nv))
    # Pin the two vertices farthest apart (roughly) at (0, 0) and (1, 0).
    i0 = int(np.argmax(np.linalg.norm(p - p.mean(axis=0), axis=1)))
    i1 = int(np.argmax(np.linalg.norm(p - p[i0], axis=1)))
    pinned = np.array([i0, i1, nv + i0, nv + i1])
    values = np.array([0.0, 1.0, 0.0, 0.0])
    free = np.setdiff1d(np.arange(2 * nv), pinned)
    a_free = matrix[:, free]
    rhs = -(matrix[:, pinned] @ values)
    normal = (a_free.T @ a_free).tocsc()
    solution = np.empty(2 * nv)
    solution[pinned] = values
    solution[free] = spsolve(normal + sparse.identity(len(free)) * 1e-12, a_free.T @ rhs)
    return np.stack([solution[:nv], solution[nv:]], axis=1)


def projection(positions: np.ndarray, axis: int) -> np.ndarray:
    """Orthographic projection onto the plane across AXES[axis] (one-to-one for a chart facing it)."""
    d = AXES[axis]
    u = np.cross(d, [0.0, 1.0, 0.0] if abs(d[1]) < 0.9 else [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    p = positions.astype(np.float64)
    return np.stack([p @ u, p @ v], axis=1)


def folds(uv: np.ndarray, faces: np.ndarray, areas: np.ndarray) -> int:
    """Faces whose UV winding disagrees with the chart's (area-weighted) majority (pass ``areas``
    0 for faces to leave out)."""
    t = uv[faces]
    signed = (t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1]) - (t[:, 2, 0] - t[:, 0, 0]) * (t[:, 1, 1] - t[:, 0, 1])
    major = np.sign((signed * (areas > 0)).sum())
    tiny = np.abs(signed) <= 1e-12 * max(float(np.abs(signed).max()), 1e-30)
    return int(np.count_nonzero((np.sign(signed) != major) & ~tiny & (areas > 0)))


def area_stretch(uv: np.ndarray, faces: np.ndarray, areas: np.ndarray) -> float:
    """95th percentile (area-weighted) of each face's UV share over its 3-D share, or its inverse."""
    t = uv[faces]
    auv = 0.5 * np.abs((t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1])
                       - (t[:, 2, 0] - t[:, 0, 0]) * (t[:, 1, 1] - t[:, 0, 1]))
    ok = areas > 0
    if not ok.any() or (auv[ok] <= 1e-12 * max(float(auv.max()), 1e-300)).any():
        return np.inf  # a face flattened to nothing (a collapsed chart) is infinitely stretched
    ratio = (auv[ok] / auv[ok].sum()) / (areas[ok] / areas[ok].sum())
    stretch = np.maximum(ratio, 1.0 / ratio)
    order = np.argsort(stretch)
    cum = np.cumsum(areas[ok][order])
    return float(stretch[order][np.searchsorted(cum, 0.95 * cum[-1])])


def conformal_or_none(positions: np.ndarray, faces: np.ndarray) -> np.ndarray | None:
    """LSCM uvs per vertex of one connected chart when they have no fold and stretch within
    MAX_AREA_STRETCH; else None."""
    areas = face_normals(positions, faces)[1]
    try:
        uv = lscm(positions, faces)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):  # a singular system
        return None
    if np.isfinite(uv).all() and folds(uv, faces, areas) == 0 and area_stretch(uv, faces, areas) <= MAX_AREA_STRETCH:
        return uv
    return None


def _connected(faces: np.ndarray) -> np.ndarray:
    """Edge-connected piece of every face."""
    a, b = face_adjacency(faces)
    m = len(faces)
    graph = sparse.coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(m, m))
    return csgraph.connected_components(graph, directed=False)[1]


def flatten_region(positions: np.ndarray, faces: np.ndarray, axis: int, depth: int = SPLIT_DEPTH
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Charts for one view region: (its face indices, uv per face corner as (F, 3, 2)).

    LSCM of the whole region when it flattens cleanly; otherwise (stretched: a cone's side
    narrowing to its apex, a band wrapping round a handle) the region is cut in two across its
    longest extent and each edge-connected half is flattened again, down to ``depth`` cuts; only
    then the projection along the axis, whose faces at a grazing angle are left out (for xatlas).
    Why: the projection's left-out faces were scattered strips that xatlas cut into dozens of
    islands (the cone: 9 regions, 446 left-out faces in 80 strips, 92 islands); two or four
    conformal halves are far fewer.
    """
    normals, areas = face_normals(positions, faces)
    uv = conformal_or_none(positions, faces)
    if uv is not None:
        return [(np.arange(len(faces)), uv[faces])]
    if depth > 0 and len(faces) >= 2 * MIN_SPLIT_FACES:
        centres = positions[faces].mean(axis=1).astype(np.float64)
        centred = centres - centres.mean(axis=0)
        direction = np.linalg.svd(centred, full_matrices=False)[2][0]  # the longest extent
        t = centred @ direction
        half = t > np.median(t)
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for side in (half, ~half):
            idx = np.flatnonzero(side)
            piece = _connected(faces[idx])
            for k in range(int(piece.max()) + 1):
                sub = idx[piece == k]
                verts, inverse = np.unique(faces[sub], return_inverse=True)
                for fidx, corner_uv in flatten_region(positions[verts], inverse.reshape(-1, 3), axis, depth - 1):
                    out.append((sub[fidx], corner_uv))
        return out
    keep = np.flatnonzero((normals @ AXES[axis] > PROJECTION_FACING) | (areas <= 0))
    if not keep.size:
        return []
    # The kept faces may fall apart into several pieces: each is a chart of its own, so the packer
    # brings each to the common texel density (one chart of several islands kept one density for all).
    corner_uv = projection(positions, axis)[faces[keep]]
    piece = _connected(faces[keep])
    return [(keep[piece == k], corner_uv[piece == k]) for k in range(int(piece.max()) + 1)]


__all__ = ["AXES", "TURNED_FACING", "area_stretch", "conformal_or_none", "face_normals", "flatten_region", "folds", "lscm",
           "projection", "view_charts"]

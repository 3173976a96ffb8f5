"""Cut a triangle mesh into small, spatially and normal-coherent chunks of faces.

Why: xatlas' chart clustering is single-threaded per input mesh and superlinear in
the number of charts it grows (about 132 s at 200k faces with defaults). Giving it
many small meshes instead of one big one keeps every clustering problem small; the
price is extra seams along the cuts, which the packer handles like any other chart
border. Chunks are made by recursive median bisection in a 6-D space (face centroid,
plus the face normal scaled by a fraction of the bounding-box diagonal), so opposite
sides of a thin part land in different chunks early and each chunk is close to a
height field (cheap and low-distortion to parametrize).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

# How much a unit change of normal counts against a change of position, relative to
# the bounding-box diagonal. 0.25: two faces with opposite normals are as far apart
# as two points half a diagonal apart, so front and back are split before anything
# finer, while a smooth patch is split mostly by position.
NORMAL_WEIGHT = 0.25


def face_features(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(M, 6) float64: centroid and weighted unit normal per face."""
    tri = positions[faces].astype(np.float64)
    centroid = tri.mean(axis=1)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = np.divide(normal, length, out=np.zeros_like(normal), where=length > 0)
    diag = float(np.linalg.norm(positions.max(axis=0) - positions.min(axis=0))) if len(positions) else 1.0
    return np.hstack([centroid, normal * (NORMAL_WEIGHT * max(diag, 1e-12))])


def bisect_chunks(features: np.ndarray, max_chunk: int) -> np.ndarray:
    """Label each row with a chunk id so that no chunk holds more than ``max_chunk`` rows.

    Every oversized group is split at the median of its widest feature dimension
    (``np.argpartition``: linear time per group, so a level costs O(rows); measured
    2.6x faster than sorting every level at 200k faces, 3.1x at 1M).
    """
    n = features.shape[0]
    labels = np.zeros(n, dtype=np.int64)
    if n <= max_chunk:
        return labels
    pending = [np.arange(n)]
    chunk = 0
    while pending:
        idx = pending.pop()
        if idx.shape[0] <= max_chunk:
            labels[idx] = chunk
            chunk += 1
            continue
        f = features[idx]
        dim = int(np.argmax(f.max(axis=0) - f.min(axis=0)))
        half = idx.shape[0] // 2
        part = np.argpartition(f[:, dim], half)
        pending.append(idx[part[half:]])
        pending.append(idx[part[:half]])
    return labels


def face_adjacency(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of faces sharing an edge (each pair once), vectorised via sorted edge keys."""
    f = np.asarray(faces, dtype=np.int64)
    m = f.shape[0]
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    owner = np.tile(np.arange(m), 3)
    key = edges[:, 0] * (int(f.max()) + 1) + edges[:, 1]
    order = np.argsort(key, kind="stable")
    key, owner = key[order], owner[order]
    same = key[1:] == key[:-1]  # non-manifold edges pair up consecutive owners, good enough here
    return owner[:-1][same], owner[1:][same]


def connected_chunks(faces: np.ndarray, labels: np.ndarray, min_faces: int, rounds: int = 3) -> np.ndarray:
    """Split chunks into edge-connected pieces, then merge pieces under ``min_faces``
    into the neighbour they share most edges with.

    Why: a median cut through a bumpy surface leaves small islands; each becomes its
    own chart with its own gutter (measured: 256 chunks -> 642 pieces at 200k faces),
    which wastes texture space and adds seams. Pieces that touch no other piece
    (a small separate part of the model) stay as they are.
    """
    a, b = face_adjacency(faces)
    m = labels.shape[0]
    inside = labels[a] == labels[b]
    graph = sparse.coo_matrix((np.ones(int(inside.sum()), dtype=np.int8), (a[inside], b[inside])), shape=(m, m))
    _, piece = csgraph.connected_components(graph, directed=False)
    for _ in range(rounds):
        sizes = np.bincount(piece)
        small = sizes < min_faces
        cross = piece[a] != piece[b]
        pa, pb = piece[a][cross], piece[b][cross]
        # Consider both directions: small piece -> neighbour.
        src = np.concatenate([pa, pb])
        dst = np.concatenate([pb, pa])
        pick = small[src]
        if not pick.any():
            break
        src, dst = src[pick], dst[pick]
        # Count shared edges per (src, dst) and keep the dst with the most per src.
        base = int(piece.max()) + 1
        uniq, counts = np.unique(src * base + dst, return_counts=True)
        u_src, u_dst = uniq // base, uniq % base
        order = np.lexsort((-counts, u_src))
        first = order[np.r_[True, np.diff(u_src[order]) != 0]]
        target = np.arange(sizes.shape[0])
        target[u_src[first]] = u_dst[first]
        # Avoid merge cycles between two small pieces (a->b, b->a): keep the lower id's target.
        cyc = target[target] == np.arange(sizes.shape[0])
        cyc &= target != np.arange(sizes.shape[0])
        keep_self = cyc & (np.arange(sizes.shape[0]) > target)
        target[keep_self] = np.arange(sizes.shape[0])[keep_self]
        # Resolve chains (a->b->c) to their end.
        for _ in range(8):
            nxt = target[target]
            if np.array_equal(nxt, target):
                break
            target = nxt
        _, piece = np.unique(target[piece], return_inverse=True)
    return piece


__all__ = ["NORMAL_WEIGHT", "bisect_chunks", "connected_chunks", "face_adjacency", "face_features"]

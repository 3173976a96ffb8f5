"""Colour propagation over the mesh: from vertices the views saw to those they did not.

Vertices are welded by position first, so colour crosses UV seams and both sides of a seam get
the same values (no visible seam). Every unseen vertex takes the colour of its nearest seen
vertex along mesh edges (one multi-source Dijkstra in scipy, O(E log V), where upstream's
per-vertex Python loop takes hours on big meshes), then conjugate-gradient steps towards the
harmonic fill (each unseen vertex the mean of its neighbours) blend the nearest-source regions.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree


def weld(positions: np.ndarray, tolerance: float = 1e-6) -> tuple[np.ndarray, int]:
    """(V,) id of each vertex among the distinct positions, and their count.

    Vertices closer than ``tolerance`` times the bounding-box diagonal are one: seam copies
    computed by different formulas (sin(2 pi) is not 0) still weld. A k-d tree finds the close
    pairs (no grid, so no two copies straddle a cell border), connected components merge them.
    """
    p = np.asarray(positions, np.float64).reshape(-1, 3)
    if len(p) == 0:
        return np.zeros(0, np.int64), 0
    diag = float(np.linalg.norm(p.max(axis=0) - p.min(axis=0)))
    pairs = cKDTree(p).query_pairs(r=max(tolerance * diag, 1e-30), output_type="ndarray")
    graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(p), len(p)))
    count, labels = csgraph.connected_components(graph, directed=False)
    return labels.astype(np.int64), int(count)


def vertex_colours(
    texture: np.ndarray, known: np.ndarray, face_id: np.ndarray, bary: np.ndarray, faces: np.ndarray, vertex_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex colour (V, C) float32 from the known texels of its faces, weighted by barycentrics; and (V,) bool seen."""
    sel = known & (face_id >= 0)
    tri = faces[face_id[sel]]  # (N, 3)
    w = bary[sel].astype(np.float64)  # (N, 3)
    col = texture[sel].astype(np.float64)  # (N, C)
    wsum = np.bincount(tri.reshape(-1), weights=w.reshape(-1), minlength=vertex_count)
    out = np.zeros((vertex_count, texture.shape[2]), np.float64)
    for k in range(texture.shape[2]):
        out[:, k] = np.bincount(tri.reshape(-1), weights=(w * col[:, k : k + 1]).reshape(-1), minlength=vertex_count)
    seen = wsum > 1e-6
    out[seen] /= wsum[seen, None]
    return out.astype(np.float32), seen


def propagate(
    positions: np.ndarray, faces: np.ndarray, colours: np.ndarray, seen: np.ndarray, smooth_iterations: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Colours (V, C) for every vertex connected to a seen one, and (V,) bool where defined."""
    v = len(positions)
    if v == 0 or not seen.any():
        return colours, seen.copy()
    wid, n = weld(positions)
    # Merge the seen colours of welded copies (a seam vertex seen on one side only still counts).
    cnt = np.bincount(wid, weights=seen.astype(np.float64), minlength=n)
    wcol = np.stack([np.bincount(wid, weights=colours[:, k] * seen, minlength=n) for k in range(colours.shape[1])],
                    1).astype(np.float64)
    wseen = cnt > 0
    wcol[wseen] /= cnt[wseen, None]
    wf = wid[faces]
    i = np.concatenate([wf[:, 0], wf[:, 1], wf[:, 2]])
    j = np.concatenate([wf[:, 1], wf[:, 2], wf[:, 0]])
    wpos = np.zeros((n, 3))
    wpos[wid] = positions
    # Zero-length edges would vanish from the sparse graph: keep them with a tiny length.
    length = np.linalg.norm(wpos[i] - wpos[j], axis=1) + 1e-12
    graph = sparse.coo_matrix((length, (i, j)), shape=(n, n)).tocsr()
    sources = np.flatnonzero(wseen)
    _, _, nearest = csgraph.dijkstra(graph, directed=False, indices=sources, min_only=True, return_predecessors=True)
    reached = nearest >= 0
    out = np.zeros_like(wcol)
    out[reached] = wcol[nearest[reached]]
    free = reached & ~wseen
    if smooth_iterations > 0 and free.any():
        adj = graph + graph.T
        adj.data[:] = 1.0
        out = harmonic(adj.tocsr(), out, free, smooth_iterations)
    return out[wid].astype(np.float32), reached[wid]


def harmonic(adj: sparse.csr_matrix, values: np.ndarray, free: np.ndarray, iterations: int) -> np.ndarray:
    """Make ``values`` (N, C) harmonic on the ``free`` vertices (each the mean of its neighbours),
    keeping the others fixed: a few conjugate-gradient steps on the graph Laplacian, started from
    the nearest-source colours. The nearest-source fill alone leaves streaks along the borders of
    its regions; the harmonic blend is smooth. ``iterations`` bounds the cost (O(edges) each).
    """
    idx = np.flatnonzero(free)
    fixed = ~free
    a_ff = adj[idx][:, idx].tocsr()
    deg = np.asarray(adj[idx].sum(axis=1)).reshape(-1)
    ok = deg > 0
    if not ok.all():  # isolated free vertices keep their value
        idx, deg = idx[ok], deg[ok]
        a_ff = adj[idx][:, idx].tocsr()
    b = adj[idx][:, np.flatnonzero(fixed)] @ values[fixed]  # pull from the fixed neighbours
    x = values[idx].astype(np.float64)
    inv_deg = (1.0 / deg)[:, None]

    def apply(v: np.ndarray) -> np.ndarray:
        return deg[:, None] * v - a_ff @ v

    r = b - apply(x)
    z = r * inv_deg
    p = z.copy()
    rz = (r * z).sum(axis=0)
    stop = 1e-6 * max(float(np.abs(b).sum(axis=0).max()), 1e-12)
    for _ in range(iterations):
        if float(np.abs(r).sum(axis=0).max()) < stop:
            break
        q = apply(p)
        pq = (p * q).sum(axis=0)
        alpha = np.where(pq > 0, rz / np.where(pq > 0, pq, 1.0), 0.0)
        x += alpha * p
        r -= alpha * q
        z = r * inv_deg
        rz_new = (r * z).sum(axis=0)
        beta = np.where(rz > 0, rz_new / np.where(rz > 0, rz, 1.0), 0.0)
        p = z + beta * p
        rz = rz_new
    out = values.copy()
    out[idx] = x
    return out


def paint_charts(
    texture: np.ndarray, known: np.ndarray, face_id: np.ndarray, bary: np.ndarray, faces: np.ndarray,
    colours: np.ndarray, defined: np.ndarray,
) -> np.ndarray:
    """Fill unknown texels inside charts from the vertex colours of their face; returns the new known mask."""
    todo = ~known & (face_id >= 0)
    rows, cols = np.nonzero(todo)
    tri = faces[face_id[rows, cols]]
    ok = defined[tri].all(axis=1)
    rows, cols, tri = rows[ok], cols[ok], tri[ok]
    texture[rows, cols] = np.einsum("nk,nkc->nc", bary[rows, cols], colours[tri])
    out = known.copy()
    out[rows, cols] = True
    return out

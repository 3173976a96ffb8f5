"""Topology checks and connectivity for triangle meshes (vectorised, fine at 1M faces)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class TopologyReport:
    faces: int
    boundary_edges: int  # edges used by one face
    nonmanifold_edges: int  # edges used by three faces or more
    nonmanifold_vertices: int  # vertices whose faces form more than one fan
    degenerate_faces: int  # faces repeating a vertex index
    unreferenced_vertices: int

    @property
    def watertight(self) -> bool:
        return self.faces > 0 and self.boundary_edges == 0 and self.nonmanifold_edges == 0

    @property
    def manifold(self) -> bool:
        return self.nonmanifold_edges == 0 and self.nonmanifold_vertices == 0 and self.degenerate_faces == 0

    @property
    def closed_manifold(self) -> bool:
        return self.watertight and self.manifold


def undirected_edges(faces: np.ndarray) -> np.ndarray:
    """(3M, 2) edges, smaller index first, in face order (edge j of face i is row 3 i + j)."""
    f = np.asarray(faces, np.int64)
    e = np.stack([f, np.roll(f, -1, axis=1)], axis=2).reshape(-1, 2)
    return np.sort(e, axis=1)


def topology_report(faces: np.ndarray, vertex_count: int | None = None) -> TopologyReport:
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    n = int(vertex_count if vertex_count is not None else (f.max() + 1 if len(f) else 0))
    if len(f) == 0:
        return TopologyReport(0, 0, 0, 0, 0, n)
    degenerate = int(((f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])).sum())
    edges = undirected_edges(f)
    key = edges[:, 0] * n + edges[:, 1]
    uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    referenced = np.zeros(n, bool)
    referenced[f.ravel()] = True
    return TopologyReport(
        faces=len(f),
        boundary_edges=int((counts == 1).sum()),
        nonmanifold_edges=int((counts > 2).sum()),
        nonmanifold_vertices=_count_pinched_vertices(f, n) if degenerate == 0 else 0,
        degenerate_faces=degenerate,
        unreferenced_vertices=int(n - referenced.sum()),
    )


def corner_fans(faces: np.ndarray, vertex_count: int) -> np.ndarray:
    """Fan label of every face corner (row-major, corner j of face i at 3 i + j).

    Nodes are face corners; two corners of the same vertex are linked when their
    faces share an edge through that vertex (edges used by exactly two faces). A
    vertex is manifold when all its corners carry one label.
    """
    f = np.asarray(faces, np.int64)
    m = len(f)
    edges = undirected_edges(f)
    _, inverse, counts = np.unique(edges[:, 0] * vertex_count + edges[:, 1], return_inverse=True,
                                   return_counts=True)
    # Edge occurrence 3i+j joins corner (i, j) and corner (i, j+1).
    corner_a = np.arange(3 * m)
    corner_b = (np.arange(m)[:, None] * 3 + (np.arange(3)[None, :] + 1) % 3).ravel()
    shared = counts[inverse] == 2
    occ = np.flatnonzero(shared)[np.argsort(inverse[shared], kind="stable")]  # pairs, consecutive
    first, second = occ[0::2], occ[1::2]
    vert = f.ravel()
    a1, b1, a2, b2 = corner_a[first], corner_b[first], corner_a[second], corner_b[second]
    same = vert[a1] == vert[a2]  # the two faces may list the edge in either direction
    links = np.concatenate(
        [np.stack([a1, np.where(same, a2, b2)], axis=1), np.stack([b1, np.where(same, b2, a2)], axis=1)]
    )
    graph = sparse.coo_matrix((np.ones(len(links), np.int8), (links[:, 0], links[:, 1])), shape=(3 * m, 3 * m))
    _, labels = connected_components(graph, directed=False)
    return labels


def _count_pinched_vertices(f: np.ndarray, n: int) -> int:
    """Vertices whose incident faces form more than one edge-connected fan."""
    labels = corner_fans(f, n)
    groups = np.unique(f.ravel() * np.int64(3 * len(f)) + labels)  # (vertex, fan) pairs as one key
    per_vertex = np.bincount(groups // np.int64(3 * len(f)), minlength=n)
    return int((per_vertex > 1).sum())


def face_components(faces: np.ndarray, vertex_count: int) -> tuple[int, np.ndarray]:
    """Connected components over shared vertices: (count, label per face)."""
    f = np.asarray(faces, np.int64)
    if len(f) == 0:
        return 0, np.zeros(0, np.int64)
    rows = np.concatenate([f[:, 0], f[:, 1]])
    cols = np.concatenate([f[:, 1], f[:, 2]])
    graph = sparse.coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(vertex_count, vertex_count))
    count, labels = connected_components(graph, directed=False)
    return int(count), labels[f[:, 0]]


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop unreferenced vertices and renumber faces."""
    f = np.asarray(faces)
    used = np.zeros(len(vertices), bool)
    used[f.ravel()] = True
    remap = np.cumsum(used) - 1
    return np.ascontiguousarray(vertices[used]), remap[f].astype(np.int32)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed mesh; positive when faces wind counter-clockwise outward."""
    v = np.asarray(vertices, np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


__all__ = ["TopologyReport", "topology_report", "undirected_edges", "corner_fans", "face_components", "compact", "signed_volume"]

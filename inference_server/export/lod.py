"""LOD chain that keeps the atlas: every level samples the same textures as LOD 0.

The input is already split at UV seams, so every seam is an open border of the
split mesh. Quadric decimation (fast_simplification) with ``preserve_border``
never collapses an edge touching a border vertex: seams and real boundaries stay
exactly where they are, both sides of a seam stay identical (no cracks), and every
surviving interior vertex stays inside its own chart. Interior vertices move to
their quadric-optimal position, so their UV (and normal) is re-sampled from LOD 0:
the new position is projected onto the nearest of the LOD 0 triangles that were
collapsed into it, and the UV is interpolated there. Border vertices do not move
and keep their UV exactly.

A geometry-only result has no UVs (and so no seams): the same decimation runs, with
only the normals re-sampled.
"""

from __future__ import annotations

import numpy as np
import fast_simplification

from ..assets import MeshData
from ..uv.quality import chart_labels
from .meshprep import unit_or

# Relaxation rounds for the rare UV fold a collapse leaves behind (measured: 1 face
# in 50k at 25 % of a 200k-face mesh); each round moves only the free vertices of
# folded faces to the mean UV of their neighbours.
UNTANGLE_ROUNDS = 20


def _closest_barycentric(points: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentrics of (approximately) the closest point of each triangle to each point,
    and the squared distance. Projects onto the plane and clamps to the triangle, which
    is exact inside and a close bound near edges, good enough to pick a triangle."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1, v2 = b - a, c - a, points - a
    d00 = (v0 * v0).sum(1)
    d01 = (v0 * v1).sum(1)
    d11 = (v1 * v1).sum(1)
    d20 = (v2 * v0).sum(1)
    d21 = (v2 * v1).sum(1)
    denom = d00 * d11 - d01 * d01
    denom = np.where(np.abs(denom) > 1e-30, denom, 1e-30)
    wb = (d11 * d20 - d01 * d21) / denom
    wc = (d00 * d21 - d01 * d20) / denom
    bary = np.stack([1.0 - wb - wc, wb, wc], axis=1)
    bary = np.clip(bary, 0.0, None)
    bary /= np.maximum(bary.sum(1, keepdims=True), 1e-30)
    closest = (bary[:, :, None] * tri).sum(1)
    return bary, ((closest - points) ** 2).sum(1)


def decimate_keep_uvs(mesh: MeshData, target_faces: int) -> MeshData:
    """Decimate towards ``target_faces`` keeping seams/borders fixed and UVs (when there are any) valid."""
    pos = np.asarray(mesh.positions, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if target_faces >= faces.shape[0]:
        return MeshData(mesh.positions.copy(), mesh.faces.copy(), None if mesh.uvs is None else mesh.uvs.copy(),
                        None if mesh.normals is None else mesh.normals.copy(), None, mesh.smooth)
    new_pos, new_faces, collapses = fast_simplification.simplify(
        pos, faces.astype(np.int32), target_count=int(target_faces), preserve_border=True, return_collapses=True
    )
    # The replay gives which output vertex every input vertex ended up in.
    _, _, mapping = fast_simplification.replay_simplification(pos, faces, collapses)
    n_out = new_pos.shape[0]

    # Candidate (output vertex, input face) pairs: faces touching a vertex of the cluster.
    pairs = np.unique(np.stack([mapping[faces].ravel(), np.repeat(np.arange(faces.shape[0]), 3)], 1), axis=0)
    pairs = pairs[pairs[:, 0] < n_out]
    out_v, in_f = pairs[:, 0], pairs[:, 1]
    bary, dist = _closest_barycentric(new_pos[out_v], pos[faces[in_f]])
    # Best pair per output vertex: sort by (vertex, distance), take the first of each run.
    order = np.lexsort((dist, out_v))
    first = order[np.r_[True, np.diff(out_v[order]) != 0]]
    best_face = np.zeros(n_out, dtype=np.int64)
    best_bary = np.zeros((n_out, 3))
    best_face[out_v[first]] = in_f[first]
    best_bary[out_v[first]] = bary[first]

    def resample(attr: np.ndarray) -> np.ndarray:
        return (np.asarray(attr, dtype=np.float64)[faces[best_face]] * best_bary[:, :, None]).sum(1)

    uvs = None if mesh.uvs is None else resample(mesh.uvs)
    normals = None if mesh.normals is None else unit_or(resample(mesh.normals), np.array([0.0, 1.0, 0.0]))
    # Vertices that did not move (borders, seams, untouched ones) keep their exact values.
    unmoved = np.zeros(n_out, dtype=bool)
    source = np.full(n_out, -1, dtype=np.int64)
    in_range = mapping < n_out
    source[mapping[in_range]] = np.flatnonzero(in_range)
    has = source >= 0
    same = np.zeros(n_out, dtype=bool)
    same[has] = np.all(new_pos[has] == pos[source[has]], axis=1)
    unmoved[same] = True
    if uvs is not None and mesh.uvs is not None:
        uvs[unmoved] = np.asarray(mesh.uvs, dtype=np.float64)[source[unmoved]]
    if normals is not None:
        normals[unmoved] = np.asarray(mesh.normals, dtype=np.float64)[source[unmoved]]
    out_faces = new_faces.astype(np.int64)
    if uvs is not None:
        uvs = np.clip(untangle_uvs(out_faces, uvs, movable=~unmoved), 0.0, 1.0)
    return MeshData(
        positions=new_pos.astype(np.float32),
        faces=out_faces.astype(np.uint32),
        uvs=None if uvs is None else uvs.astype(np.float32),
        normals=None if normals is None else normals.astype(np.float32),
        tangents=None,
        smooth=mesh.smooth,
    )


def _folded(faces: np.ndarray, uvs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    t = uvs[faces]
    signed = (t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1]) - (t[:, 2, 0] - t[:, 0, 0]) * (t[:, 1, 1] - t[:, 0, 1])
    chart_sign = np.sign(np.bincount(labels, weights=signed))
    return np.sign(signed) * chart_sign[labels] < 0


def untangle_uvs(faces: np.ndarray, uvs: np.ndarray, movable: np.ndarray) -> np.ndarray:
    """Unfold UV triangles whose winding disagrees with their chart by moving their
    movable (interior, re-sampled) vertices to the mean UV of their mesh neighbours."""
    labels = chart_labels(MeshData(np.zeros((uvs.shape[0], 3), np.float32), faces.astype(np.uint32)))
    uvs = uvs.copy()
    for _ in range(UNTANGLE_ROUNDS):
        bad = _folded(faces, uvs, labels)
        if not bad.any():
            break
        verts = np.unique(faces[bad])
        verts = verts[movable[verts]]
        if verts.size == 0:
            break
        # Neighbour sums over all faces touching the chosen vertices.
        touch = np.isin(faces, verts).any(axis=1)
        f = faces[touch]
        acc = np.zeros_like(uvs)
        cnt = np.zeros(uvs.shape[0])
        for k in range(3):
            for j in (1, 2):
                np.add.at(acc, f[:, k], uvs[f[:, (k + j) % 3]])
                np.add.at(cnt, f[:, k], 1.0)
        uvs[verts] = acc[verts] / np.maximum(cnt[verts], 1.0)[:, None]
    return uvs


def build_lods(mesh: MeshData, fractions: tuple[float, ...] | list[float]) -> list[MeshData]:
    """One mesh per fraction of ``mesh``'s faces (1.0 = a copy), all on the same atlas."""
    out: list[MeshData] = []
    for fraction in fractions:
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"LOD fractions must be in (0, 1], got {fraction}")
        target = max(4, int(round(float(fraction) * mesh.face_count)))
        out.append(decimate_keep_uvs(mesh, target))
    return out


__all__ = ["build_lods", "decimate_keep_uvs"]

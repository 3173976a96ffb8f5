"""Shared mesh clean-up: floaters, decimation to a face budget, smoothing, normals.

Everything is vectorised (numpy/scipy) or delegated to fast_simplification's
C++ quadric decimator, so a 1M-face marching-cubes mesh is cleaned in about
two seconds on two cores (see docs/performance-notes.md for the baselines).
"""

from __future__ import annotations

import fast_simplification
import numpy as np
from scipy import sparse

from ..assets import MeshData
from ..pipeline.base import JobContext, PipelineError
from .topology import TopologyReport, compact, corner_fans, face_components, topology_report

STAGE = "cleanup"
# fast_simplification's aggressiveness (its error threshold grows as (iteration + 3)^agg).
# Measured on a 1M-face torus -> 200k: agg 7 (its default) 1.5 s, max error 3.8e-4; agg 3 1.2 s,
# 1.1e-4, and it glues thin slivers less often. agg 3 can stop short of the budget on small
# targets; agg 7 always reaches it, so it is the fallback. (agg 1 stalls: not used.)
DECIMATE_AGGS = (3.0, 7.0)
# After decimation a crumb is dropped below this share of min_fraction: a part that passed the
# floater test before decimation keeps its place even if decimation thinned it more than the rest.
POST_DECIMATION_SHARE = 0.25


def remove_floaters(vertices: np.ndarray, faces: np.ndarray, min_fraction: float = 0.001
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Drop connected components with fewer than ``min_fraction`` of all faces.

    The largest component is always kept, so the result is never empty for a
    non-empty input. Unreferenced vertices are dropped.
    """
    if len(faces) == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)
    count, labels = face_components(faces, len(vertices))
    if count > 1:
        sizes = np.bincount(labels, minlength=count)
        keep = sizes >= min_fraction * len(faces)
        keep[np.argmax(sizes)] = True
        faces = faces[keep[labels]]
    return compact(vertices, faces)


def decimate(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse decimation to at most ``max_faces`` faces.

    Collapses can glue the two sides of a thin part together (an edge shared by
    four faces, a pinched vertex). The fallbacks, in order: the other
    aggressiveness setting; a repair of either result (see
    :func:`repair_manifold`); decimation in halving steps with a repair after
    each. Closed manifold inputs have always come out closed and manifold in our
    tests; :func:`clean_mesh` verifies it and raises if not.
    """
    v, f, _ = _decimate(vertices, faces, max_faces)
    return v, f


def _decimate(vertices: np.ndarray, faces: np.ndarray, max_faces: int
              ) -> tuple[np.ndarray, np.ndarray, TopologyReport | None]:
    """:func:`decimate`, plus the topology report of the result when one was computed."""
    if len(faces) <= max_faces:
        return np.asarray(vertices, np.float32), np.asarray(faces, np.int32), None
    attempts = []
    for agg in DECIMATE_AGGS:
        v, f = _simplify(vertices, faces, max_faces, agg)
        if len(f) > max_faces:  # a gentle setting can stop short of the budget
            continue
        report = topology_report(f, len(v))
        if report.closed_manifold:
            return v, f, report
        attempts.append((v, f))
    for v, f in attempts:
        v, f = repair_manifold(v, f)
        report = topology_report(f, len(v))
        if report.closed_manifold:
            return v, f, report
    # Step down gradually: halving per pass rarely glues sheets.
    v, f = np.asarray(vertices, np.float32), np.asarray(faces, np.int32)
    while len(f) > max_faces:
        before = len(f)
        v, f = _simplify(v, f, max(max_faces, len(f) // 2), DECIMATE_AGGS[-1])
        v, f = repair_manifold(v, f)
        if len(f) > 0.99 * before:  # stuck (e.g. every collapse rejected): stop rather than spin
            break
    return v, f, None


def _simplify(vertices: np.ndarray, faces: np.ndarray, target: int, agg: float) -> tuple[np.ndarray, np.ndarray]:
    v, f = fast_simplification.simplify(
        np.asarray(vertices, np.float64), np.asarray(faces, np.int32), target_count=int(target), agg=agg
    )
    return compact(np.asarray(v, np.float32), np.asarray(f, np.int64))


def repair_manifold(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove degenerate and duplicate faces, and split vertices pinched between fans.

    A pinched vertex (two cones touching at a point) is duplicated once per fan;
    the surface stays closed and becomes vertex-manifold.
    """
    f = np.asarray(faces, np.int64)
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    # Duplicate faces (same vertex set, either winding) come from collapsed slivers; drop both copies.
    key = np.sort(f, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    f = f[counts[inverse.ravel()] == 1]
    v = np.asarray(vertices, np.float32)
    v, f = _split_pinched(v, f)
    return compact(v, f)


def _split_pinched(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(faces) == 0:
        return vertices, faces
    vert = faces.ravel()
    # One output vertex per (vertex, fan) pair.
    stride = np.int64(3 * len(faces))
    pairs, new_index = np.unique(vert * stride + corner_fans(faces, len(vertices)), return_inverse=True)
    if len(pairs) == len(np.unique(vert)):
        return vertices, faces
    return vertices[pairs // stride], new_index.reshape(-1, 3)


def smooth(vertices: np.ndarray, faces: np.ndarray, iterations: int = 5, lam: float = 0.5, mu: float = -0.53
           ) -> np.ndarray:
    """Taubin smoothing (uniform Laplacian, shrink then inflate): removes grid ripples, keeps volume."""
    if iterations <= 0 or len(faces) == 0:
        return np.asarray(vertices, np.float32)
    n = len(vertices)
    f = np.asarray(faces, np.int64)
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
    adj = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n))
    adj.data[:] = 1.0  # duplicates were summed; each neighbour counts once
    degree = np.asarray(adj.sum(axis=1)).ravel()
    degree[degree == 0] = 1.0
    walk = sparse.diags(1.0 / degree) @ adj
    v0 = np.asarray(vertices, np.float64)
    v = v0
    for _ in range(iterations):
        v = v + lam * (walk @ v - v)
        v = v + mu * (walk @ v - v)
    return _unfold(v0, v, f).astype(np.float32)


def _unfold(before: np.ndarray, after: np.ndarray, faces: np.ndarray, rounds: int = 8) -> np.ndarray:
    """``after`` with the vertices of faces that smoothing turned over put back where they were.

    Why: on a decimated mesh with long thin triangles (at a pillow's ridge) a uniform Laplacian
    step can pull a vertex across the opposite edge; measured on the benchmark's front-only box,
    600 of 24k faces turned over, each a dark speck in shading and a UV island of its own. A face
    is turned over when it faces away from its own corners' vertex normals; only faces smoothing
    turned over are put back (a fold in the input that smoothing irons out stays ironed).
    Putting a face's vertices back can turn a neighbour over, hence a few rounds.
    """
    n_vertices = len(before)

    def folded(v: np.ndarray) -> np.ndarray:
        t = v[faces]
        face_n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
        vertex_n = np.zeros((n_vertices, 3))
        for k in range(3):
            np.add.at(vertex_n, faces[:, k], face_n)
        return (face_n * vertex_n[faces].sum(axis=1)).sum(axis=1) < 0.0

    was = folded(before)
    out = after.copy()
    for _ in range(rounds):
        turned = folded(out) & ~was
        if not turned.any():
            break
        back = np.unique(faces[turned])
        out[back] = before[back]
    return out


def vertex_normals(
    vertices: np.ndarray, faces: np.ndarray, fallback: tuple[float, float, float] = (0.0, 0.0, 1.0)
) -> np.ndarray:
    """Area-weighted vertex normals, unit length (``fallback`` where a vertex has no area)."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # length = 2 x area
    out = np.zeros((len(v), 3))
    for axis in range(3):
        w = np.repeat(face_n[:, axis], 3)
        out[:, axis] = np.bincount(f.ravel(), weights=w, minlength=len(v))
    length = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.where(length > 1e-20, out / np.maximum(length, 1e-20), np.asarray(fallback, np.float64))
    return out.astype(np.float32)


# Keep the surface as extracted for a normal-map bake only when decimation drops more than this
# share of it: below that the decimated mesh carries nearly the same shading and the bake is waste.
DETAIL_MIN_REDUCTION = 2.0


def clean_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    max_faces: int,
    min_fraction: float = 0.001,
    smooth_iterations: int = 0,
    ctx: JobContext | None = None,
) -> MeshData:
    """Floaters -> decimation -> optional Taubin smoothing -> normals, as one MeshData.

    Raises ``PipelineError(code="bad_mesh")`` when the result is empty or not a
    closed manifold (the input from marching cubes always is; a failure here is a bug
    or a field that produced no surface).
    """
    return clean_mesh_with_detail(vertices, faces, max_faces=max_faces, min_fraction=min_fraction,
                                  smooth_iterations=smooth_iterations, ctx=ctx)[0]


def clean_mesh_with_detail(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    max_faces: int,
    min_fraction: float = 0.001,
    smooth_iterations: int = 0,
    ctx: JobContext | None = None,
    closed: bool = True,
) -> tuple[MeshData, MeshData | None]:
    """:func:`clean_mesh`, plus the floater-free surface before decimation (with normals) when
    decimation removed most of it: the texture stage bakes that detail into a normal map.

    ``closed=False`` accepts a surface with a boundary (upstream's extraction, open where it meets
    the sampling box: the geometry drop-in); it must still be edge-manifold."""
    steps = 4
    _progress(ctx, 0, steps, f"removing floaters from {len(faces)} faces")
    v, f = remove_floaters(np.asarray(vertices, np.float32), np.asarray(faces, np.int64), min_fraction)
    if len(f) == 0:
        raise PipelineError("the generated surface is empty", code="bad_mesh")
    detail = None
    if len(f) > DETAIL_MIN_REDUCTION * max_faces:
        detail = MeshData(positions=np.ascontiguousarray(v, np.float32), faces=np.ascontiguousarray(f, np.uint32),
                          normals=vertex_normals(v, f), smooth=True)
    _progress(ctx, 1, steps, f"decimating {len(f)} -> {max_faces} faces")
    v, f, report = _decimate(v, f, max_faces)
    # Decimation can pinch off a few faces as a closed crumb of their own; drop those too.
    before = len(f)
    v, f = remove_floaters(v, f, min_fraction * POST_DECIMATION_SHARE)
    if len(f) != before:
        report = None
    _progress(ctx, 2, steps, "smoothing")
    v = smooth(v, f, smooth_iterations)  # moves vertices only: the topology report stays valid
    _progress(ctx, 3, steps, "normals")
    if report is None:
        report = topology_report(f, len(v))
    if not report.closed_manifold and (closed or report.nonmanifold_edges or report.degenerate_faces):
        raise PipelineError(f"the cleaned mesh is not a {'closed ' if closed else ''}manifold ({report})",
                            code="bad_mesh")
    normals = vertex_normals(v, f)
    _progress(ctx, steps, steps, f"{len(f)} faces")
    mesh = MeshData(positions=np.ascontiguousarray(v, np.float32), faces=np.ascontiguousarray(f, np.uint32),
                    normals=normals, smooth=True)
    return mesh, detail


def _progress(ctx: JobContext | None, step: int, total: int, message: str) -> None:
    if ctx is not None:
        ctx.progress(STAGE, step, total, message)


__all__ = [
    "remove_floaters", "decimate", "repair_manifold", "smooth", "vertex_normals", "clean_mesh",
    "clean_mesh_with_detail",
]

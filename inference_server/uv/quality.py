"""Measure a UV atlas: overlap, flips, stretch, gutter width, coverage and texel density.

Used by the tests and the benchmark, and cheap enough to log in the pipeline.
Stretch is measured per face from the singular values s1 >= s2 of the linear map
from the face's 3-D plane to UV, after normalising by the global texel density:
- area distortion: max(s1*s2, 1/(s1*s2)) (1 = the face gets its fair share of texels);
- angle (conformal) distortion: s1/s2 (1 = no shear).
Texel density per chart is sqrt(UV area / 3-D area): what an artist sees as texel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from inference_server.kernels import rasterize_uv

from ..assets import MeshData


@dataclass
class AtlasQuality:
    charts: int
    uv_in_range: bool
    overlap_texels: int  # texel centres claimed by two different charts
    flipped_faces: int  # faces whose UV winding disagrees with the rest of their chart
    area_distortion_mean: float  # area-weighted
    area_distortion_p95: float
    angle_distortion_mean: float  # area-weighted
    angle_distortion_p95: float
    min_gap_px: int  # smallest gap between two charts found (capped at max_gap_checked + 1)
    coverage: float  # fraction of texels covered by a chart
    density_spread: float  # largest / smallest texel density among charts of >= 0.1% of the surface (1 = uniform)


def chart_labels(mesh: MeshData) -> np.ndarray:
    """Chart id per face: connected components over shared (split) vertices."""
    faces = np.asarray(mesh.faces, dtype=np.int64)
    m = faces.shape[0]
    rows = np.repeat(np.arange(m), 3)
    incidence = sparse.csr_matrix((np.ones(3 * m, dtype=np.int8), (rows, faces.ravel())), shape=(m, mesh.vertex_count))
    vertex_graph = incidence.T @ incidence  # vertex-vertex adjacency through faces
    _, vlabel = csgraph.connected_components(vertex_graph, directed=False)
    return vlabel[faces[:, 0]]


def distortion(mesh: MeshData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per face: (area weight, area distortion, angle distortion); degenerate faces get weight 0."""
    p = np.asarray(mesh.positions, dtype=np.float64)[mesh.faces]
    t = np.asarray(mesh.uvs, dtype=np.float64)[mesh.faces]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    n = np.cross(e1, e2)
    area3 = 0.5 * np.linalg.norm(n, axis=1)
    # Orthonormal frame of each face plane, 2-D coordinates of the edges in it.
    x_axis = e1 / np.maximum(np.linalg.norm(e1, axis=1, keepdims=True), 1e-30)
    y_axis = np.cross(n, x_axis)
    y_axis /= np.maximum(np.linalg.norm(y_axis, axis=1, keepdims=True), 1e-30)
    P = np.stack([np.stack([(e1 * x_axis).sum(1), (e2 * x_axis).sum(1)], 1),
                  np.stack([(e1 * y_axis).sum(1), (e2 * y_axis).sum(1)], 1)], 1)  # (M, 2, 2) columns = edges
    T = np.stack([t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]], axis=2)  # (M, 2, 2) columns = uv edges
    area_uv = 0.5 * np.abs(np.linalg.det(T))
    ok = (area3 > 1e-20) & (area_uv > 1e-20)
    scale = np.sqrt(area_uv[ok].sum() / area3[ok].sum()) if ok.any() else 1.0
    J = np.zeros_like(P)
    J[ok] = T[ok] @ np.linalg.inv(P[ok]) / scale
    s = np.linalg.svd(J, compute_uv=False)  # (M, 2), s1 >= s2
    s1, s2 = s[:, 0], np.maximum(s[:, 1], 1e-12)
    area_ratio = s1 * s2
    area_d = np.where(ok, np.maximum(area_ratio, 1.0 / np.maximum(area_ratio, 1e-12)), 1.0)
    angle_d = np.where(ok, s1 / s2, 1.0)
    return np.where(ok, area3, 0.0), area_d, angle_d


def chart_density(mesh: MeshData, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per chart: texel density sqrt(UV area / 3-D area) (uv units per model unit) and the chart's
    share of the 3-D surface. Charts without 3-D area get density 0."""
    labels = chart_labels(mesh) if labels is None else labels
    p = np.asarray(mesh.positions, dtype=np.float64)[mesh.faces]
    t = np.asarray(mesh.uvs, dtype=np.float64)[mesh.faces]
    area3 = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    area_uv = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    a3 = np.bincount(labels, weights=area3)
    auv = np.bincount(labels, weights=area_uv)
    density = np.sqrt(np.divide(auv, a3, out=np.zeros_like(auv), where=a3 > 0))
    return density, a3 / max(float(a3.sum()), 1e-300)


def density_spread(mesh: MeshData, labels: np.ndarray | None = None, min_share: float = 1e-3) -> float:
    """Largest over smallest texel density among charts holding at least ``min_share`` of the surface."""
    density, share = chart_density(mesh, labels)
    keep = (share >= min_share) & (density > 0)
    if not keep.any():
        return 1.0
    return float(density[keep].max() / density[keep].min())


def _weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    if cum[-1] <= 0:
        return 1.0
    return float(values[order][np.searchsorted(cum, q * cum[-1])])


def min_chart_gap(label_image: np.ndarray, max_gap: int) -> int:
    """Smallest Chebyshev distance (in texels) between texel centres of two different charts.

    Returns ``max_gap + 1`` when no two charts come within ``max_gap`` texels. "Some
    other chart within r" is monotone in r, so the common case (no conflict at
    ``max_gap``) costs one check and the rest is a bisection.
    """
    covered = label_image >= 0
    labels = label_image.astype(np.int32)
    # A sentinel above every label (ndimage's cval is a float: keep it small and exact).
    big = int(labels.max()) + 1
    lab_lo = np.where(covered, labels, big).astype(np.int32)
    lab_hi = np.where(covered, labels, -1).astype(np.int32)

    def conflict(r: int) -> bool:
        size = 2 * r + 1
        hi = ndimage.maximum_filter(lab_hi, size=size, mode="constant", cval=-1)
        if np.any(covered & (hi != labels)):
            return True
        lo = ndimage.minimum_filter(lab_lo, size=size, mode="constant", cval=big)
        return bool(np.any(covered & (lo != labels)))

    if max_gap < 1 or not conflict(max_gap):
        return max_gap + 1
    lo_r, hi_r = 1, max_gap  # invariant: conflict(hi_r) is True
    while lo_r < hi_r:
        mid = (lo_r + hi_r) // 2
        if conflict(mid):
            hi_r = mid
        else:
            lo_r = mid + 1
    return lo_r


def chart_raster(
    uvs: np.ndarray, faces: np.ndarray, labels: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Rasterize the atlas at ``size`` x ``size`` with ``kernels.rasterize_uv`` and find chart overlaps.

    Returns ``face_id`` (H, W) int32 (-1 where empty), the chart label of each texel (H, W)
    int64 (-1 where empty) and the number of texel centres covered by two or more charts.

    The shared rasterizer keeps one face per texel (where faces overlap the lowest face id
    wins), so overlaps cannot be counted while it writes. Instead the faces go in twice,
    sorted by chart ascending and then descending: each texel then holds the lowest and
    the highest chart covering it, and it is claimed by two charts exactly when those
    differ. Charts never overlap in a good atlas, so the second pass almost always agrees.
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    labels = np.asarray(labels, dtype=np.int64)
    # Stable sort: within a chart faces keep their order, so pass 1's face ids are the
    # lowest-id face of the lowest chart at each texel.
    order = np.argsort(labels, kind="stable")
    low = rasterize_uv(uvs, faces[order], size, size).face_id
    covered = low >= 0
    low_faces = order[low[covered]]  # back to the caller's face ids
    face_id = np.full(low.shape, -1, np.int32)
    face_id[covered] = low_faces
    low_labels = labels[low_faces]
    label_image = np.full(low.shape, -1, np.int64)
    label_image[covered] = low_labels
    if labels.size == 0 or labels.min() == labels.max():
        return face_id, label_image, 0  # a single chart cannot overlap another
    order_hi = np.argsort(-labels, kind="stable")
    high = rasterize_uv(uvs, faces[order_hi], size, size).face_id
    # Coverage does not depend on face order (the fill rule is per face), so ``high`` covers
    # exactly the texels of ``low``.
    high_labels = labels[order_hi[high[covered]]]
    return face_id, label_image, int(np.count_nonzero(high_labels != low_labels))


def measure_atlas(mesh: MeshData, texture_size: int, max_gap_checked: int = 16) -> AtlasQuality:
    """All metrics of :class:`AtlasQuality` for a mesh with uvs, rasterized at ``texture_size``."""
    if mesh.uvs is None:
        raise ValueError("mesh has no uvs")
    labels = chart_labels(mesh)
    face_id, label_image, overlap = chart_raster(mesh.uvs, mesh.faces, labels, texture_size)

    uv = np.asarray(mesh.uvs, dtype=np.float64)[mesh.faces]
    signed = (uv[:, 1, 0] - uv[:, 0, 0]) * (uv[:, 2, 1] - uv[:, 0, 1]) - (uv[:, 2, 0] - uv[:, 0, 0]) * (uv[:, 1, 1] - uv[:, 0, 1])
    weight, area_d, angle_d = distortion(mesh)
    # Majority winding per chart, weighted by UV area; faces against it are folds.
    chart_sign = np.bincount(labels, weights=signed)
    flipped = int(np.count_nonzero((np.sign(signed) * np.sign(chart_sign[labels]) < 0) & (np.abs(signed) > 1e-14)))
    wsum = max(weight.sum(), 1e-30)
    return AtlasQuality(
        charts=int(labels.max()) + 1,
        uv_in_range=bool(np.all((mesh.uvs >= 0.0) & (mesh.uvs <= 1.0))),
        overlap_texels=overlap,
        flipped_faces=flipped,
        area_distortion_mean=float((weight * area_d).sum() / wsum),
        area_distortion_p95=_weighted_percentile(area_d, weight, 0.95),
        angle_distortion_mean=float((weight * angle_d).sum() / wsum),
        angle_distortion_p95=_weighted_percentile(angle_d, weight, 0.95),
        min_gap_px=min_chart_gap(label_image, max_gap_checked),
        coverage=float(np.count_nonzero(face_id >= 0)) / face_id.size,
        density_spread=density_spread(mesh, labels),
    )


__all__ = [
    "AtlasQuality",
    "chart_density",
    "chart_labels",
    "chart_raster",
    "density_spread",
    "distortion",
    "measure_atlas",
    "min_chart_gap",
]

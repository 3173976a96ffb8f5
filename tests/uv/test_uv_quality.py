"""The atlas metrics catch what they claim to catch (so a passing atlas test means something)."""

from __future__ import annotations

import numpy as np

from inference_server.assets import MeshData
from inference_server.uv.quality import measure_atlas, min_chart_gap
from inference_server.kernels import rasterize_uv


def _two_quads(offset_u: float) -> MeshData:
    """Two separate unit quads in 3-D, each a chart; the second shifted by ``offset_u`` in UV."""
    quad = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    pos = np.vstack([quad, quad + [2, 0, 0]])
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], np.uint32)
    uv = np.array([[0.1, 0.4], [0.3, 0.4], [0.3, 0.2], [0.1, 0.2]], np.float32)
    uvs = np.vstack([uv, uv + [offset_u, 0]])
    return MeshData(pos, faces, uvs=uvs)


def test_overlap_is_detected() -> None:
    q = measure_atlas(_two_quads(0.1), 256)  # the second chart half covers the first
    assert q.overlap_texels > 0.2 * 0.2 * 0.5 * 256 * 256 * 0.9
    assert measure_atlas(_two_quads(0.5), 256).overlap_texels == 0


def test_flip_and_stretch_are_measured() -> None:
    m = _two_quads(0.5)
    m.uvs[6] = [0.55, 0.3]  # drag one corner across the diagonal: folds one triangle of chart 2
    q = measure_atlas(m, 256)
    assert q.flipped_faces == 1
    ok = measure_atlas(_two_quads(0.5), 256)
    assert abs(ok.area_distortion_mean - 1.0) < 1e-6 and abs(ok.angle_distortion_mean - 1.0) < 1e-6
    stretched = _two_quads(0.5)
    stretched.uvs[4:, 0] = 0.6 + (stretched.uvs[4:, 0] - 0.6) * 2.0  # chart 2 twice as wide
    s = measure_atlas(stretched, 256)
    assert s.angle_distortion_p95 > 1.9


def test_min_gap_counts_texels() -> None:
    img = np.full((40, 40), -1, np.int64)
    img[10:20, 5:10] = 0
    img[10:20, 13:20] = 1  # columns 9 and 13: 4 texels apart
    assert min_chart_gap(img, 8) == 4
    assert min_chart_gap(img, 3) == 4  # "more than 3"
    img[25:30, 0:40] = 2  # rows 19 and 25: 6 apart, not the minimum
    assert min_chart_gap(img, 8) == 4


def test_rasterizer_covers_triangle_area() -> None:
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    raster = rasterize_uv(uv, np.array([[0, 1, 2]]), 200, 200)
    face_id, bary = raster.face_id, raster.bary
    assert abs((face_id >= 0).mean() - 0.5) < 0.01
    assert np.allclose(bary[face_id >= 0].sum(1), 1.0, atol=1e-5)

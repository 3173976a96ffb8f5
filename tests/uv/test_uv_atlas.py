"""Stage 5: the unwrap keeps the surface and gives a clean atlas (the chunked xatlas charting here;
the default view charts in test_view_charts.py)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from inference_server.assets import MeshData
from inference_server.pipeline.base import JobCancelled, JobContext, PipelineError
from inference_server.uv import (
    default_padding,
    unwrap,
    unwrap_with_info,
    unwrap_with_mapping,
)
from inference_server.uv.quality import measure_atlas


def _blob(subdivisions: int = 5, seed: int = 0) -> MeshData:
    """A watertight, smoothly bumpy sphere (like the inflate backend's output)."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = sphere.vertices.copy()
    rng = np.random.default_rng(seed)
    bump = sum(0.06 * np.cos(v @ rng.normal(size=3) * 2.5 + rng.uniform(0, 6.3)) for _ in range(6))
    v *= (1.0 + bump)[:, None]
    normals = trimesh.Trimesh(v, sphere.faces, process=False).vertex_normals
    return MeshData(v.astype(np.float32), sphere.faces.astype(np.uint32), normals=normals.astype(np.float32))


@pytest.fixture(scope="module")
def blob() -> MeshData:
    return _blob(5)  # 20,480 faces


@pytest.fixture(scope="module")
def unwrapped(blob: MeshData):
    return unwrap_with_info(blob, texture_size=1024, chunk_faces=1500, charting="xatlas")


def test_uvs_in_range_and_split_mesh_shape(unwrapped, blob: MeshData) -> None:
    m = unwrapped.mesh
    assert m.uvs is not None and m.uvs.shape == (m.vertex_count, 2)
    assert m.uvs.dtype == np.float32 and m.faces.dtype == np.uint32
    assert float(m.uvs.min()) >= 0.0 and float(m.uvs.max()) <= 1.0
    assert m.face_count == blob.face_count
    assert unwrapped.chunk_count > 1  # the fast path really chunked the mesh


def test_surface_unchanged(unwrapped, blob: MeshData) -> None:
    m, vmap = unwrapped.mesh, unwrapped.vmapping
    # Every output vertex is an input vertex (positions bit-identical), normals carried over.
    np.testing.assert_array_equal(m.positions, blob.positions[vmap])
    np.testing.assert_array_equal(m.normals, blob.normals[vmap])
    # Face i still joins the same three input vertices in the same order (winding kept).
    np.testing.assert_array_equal(vmap[m.faces], blob.faces.astype(np.int64))
    # Welding the split mesh back gives the same watertight surface.
    welded = trimesh.Trimesh(m.positions, m.faces, process=True)
    assert welded.is_watertight and welded.is_winding_consistent
    assert abs(welded.area - trimesh.Trimesh(blob.positions, blob.faces).area) < 1e-6 * welded.area
    assert len(welded.vertices) == blob.vertex_count


def test_no_overlap_no_flips_bounded_stretch_and_padding(unwrapped) -> None:
    q = measure_atlas(unwrapped.mesh, 1024)
    assert q.uv_in_range
    assert q.overlap_texels == 0  # no texel centre is claimed by two charts
    assert q.flipped_faces == 0  # no folds inside a chart
    # Stretch: measured 1.02/1.06 (area) and 1.03/1.09 (angle) on this mesh; bound with margin.
    assert q.area_distortion_mean < 1.10 and q.area_distortion_p95 < 1.25
    assert q.angle_distortion_mean < 1.10 and q.angle_distortion_p95 < 1.25
    # Gutter: charts at least default_padding(1024) = 4 texels apart, as promised.
    assert unwrapped.padding_px >= default_padding(1024)
    assert q.min_gap_px >= default_padding(1024)
    assert q.coverage >= 0.6  # pack.py: 0.67 here; xatlas' packer gave 0.59 (more in test_uv_packing.py)


@pytest.mark.parametrize("size", [512, 4096])
def test_texture_sizes_scale_padding(blob: MeshData, size: int) -> None:
    result = unwrap_with_info(_blob(3), texture_size=size)
    assert result.padding_px >= default_padding(size)
    q = measure_atlas(result.mesh, size, max_gap_checked=default_padding(size))
    assert q.overlap_texels == 0 and q.min_gap_px >= default_padding(size)


def test_mapping_api_and_plain_api_agree(blob: MeshData) -> None:
    small = _blob(3)
    mesh, vmap = unwrap_with_mapping(small, texture_size=512)
    assert vmap.shape == (mesh.vertex_count,) and vmap.max() < small.vertex_count
    assert unwrap(small, texture_size=512).vertex_count == mesh.vertex_count


def test_progress_and_cancel() -> None:
    seen: list[tuple[str, int, int]] = []
    ctx = JobContext(lambda stage, step, total, msg: seen.append((stage, step, total)))
    unwrap(_blob(2), texture_size=512, ctx=ctx)
    assert seen[0][0] == "uv_atlas" and seen[-1][1] == seen[-1][2]
    cancelled = JobContext()
    cancelled.cancel()
    with pytest.raises(JobCancelled):
        unwrap(_blob(2), texture_size=512, ctx=cancelled)


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(PipelineError):
        unwrap(MeshData(np.zeros((3, 3), np.float32), np.zeros((0, 3), np.uint32)))
    with pytest.raises(PipelineError):
        unwrap(MeshData(np.zeros((3, 3), np.float32), np.array([[0, 1, 5]], np.uint32)))


def test_degenerate_faces_are_kept_not_fatal() -> None:
    """Marching cubes can emit zero-area faces: they must not abort the unwrap or break the atlas."""
    sphere = trimesh.creation.icosphere(3)
    v = np.vstack([sphere.vertices, [[5, 5, 5], [6, 6, 6], [7, 7, 7]]]).astype(np.float32)
    n = len(sphere.vertices)
    f = np.vstack([sphere.faces, [[0, 0, 1]], [[n, n + 1, n + 2]]]).astype(np.uint32)
    m = unwrap(MeshData(v, f), texture_size=512)
    assert m.face_count == len(f)
    q = measure_atlas(m, 512)
    assert q.uv_in_range and q.overlap_texels == 0 and q.flipped_faces == 0

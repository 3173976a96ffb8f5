"""Stage 8: OBJ/PLY/STL load back with the same counts; LODs follow their fractions on one atlas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from export_helpers import PROVENANCE
from inference_server.assets import Asset, MeshData
from inference_server.export import build_lods, save_asset
from inference_server.uv.quality import chart_labels, measure_atlas


def test_obj_with_mtl_and_textures(textured_asset: Asset, tmp_path: Path) -> None:
    paths = save_asset(textured_asset, tmp_path / "a.obj")
    names = sorted(p.name for p in paths)
    assert names == ["a.mtl", "a.obj", "a_basecolor.png", "a_normal.png", "a_occlusion.png", "a_roughness.png"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    loaded = trimesh.load(tmp_path / "a.obj", process=False, maintain_order=True)
    m = textured_asset.mesh
    assert len(loaded.faces) == m.face_count and len(loaded.vertices) == m.vertex_count
    np.testing.assert_allclose(loaded.vertices, m.positions, atol=1e-5)
    np.testing.assert_allclose(loaded.visual.uv[:, 1], 1.0 - m.uvs[:, 1], atol=1e-5)
    assert loaded.visual.material.image.size == (512, 512)
    text = (tmp_path / "a.obj").read_text()
    assert text.startswith("# Step1X-3D for Blender 0.1.0 (backend: inflate); AI-generated")


def test_ply_roundtrip(textured_asset: Asset, tmp_path: Path) -> None:
    (path,) = save_asset(textured_asset, tmp_path / "a.ply")
    loaded = trimesh.load(path, process=False)
    m = textured_asset.mesh
    assert len(loaded.vertices) == m.vertex_count and len(loaded.faces) == m.face_count
    np.testing.assert_array_equal(loaded.faces, m.faces)
    np.testing.assert_allclose(loaded.vertices, m.positions, atol=1e-7)
    # trimesh reads the PLY s/t as texture coordinates (v up, like OBJ).
    np.testing.assert_allclose(loaded.visual.uv[:, 1], 1.0 - m.uvs[:, 1], atol=1e-6)
    header = path.read_bytes()[:600].decode("ascii", "replace")
    assert "property uchar red" in header and "AI-generated" in header  # base colour per vertex too


def test_stl_roundtrip(textured_asset: Asset, tmp_path: Path) -> None:
    (path,) = save_asset(textured_asset, tmp_path / "a.stl")
    assert path.stat().st_size == 84 + 50 * textured_asset.mesh.face_count
    loaded = trimesh.load(path)  # STL has no shared vertices: trimesh merges by position
    welded = trimesh.Trimesh(textured_asset.mesh.positions, textured_asset.mesh.faces)  # merged the same way
    assert len(loaded.faces) == textured_asset.mesh.face_count
    assert len(loaded.vertices) == len(welded.vertices)
    assert loaded.is_watertight
    assert abs(loaded.volume - welded.volume) < 1e-5 * abs(welded.volume)


def test_unknown_suffix_is_refused(textured_asset: Asset, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported export format"):
        save_asset(textured_asset, tmp_path / "a.dae")


def test_lods_as_files_for_obj(textured_asset: Asset, tmp_path: Path) -> None:
    lods = build_lods(textured_asset.mesh, [0.5])
    asset = Asset(textured_asset.mesh, textured_asset.material, lods=lods, provenance=dict(PROVENANCE))
    paths = save_asset(asset, tmp_path / "b.obj", lods_as_files=True)
    assert {"b.obj", "b_lod1.obj", "b.mtl"} <= {p.name for p in paths}
    lod = trimesh.load(tmp_path / "b_lod1.obj", process=False, maintain_order=True)
    assert len(lod.faces) == lods[0].face_count


@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.25])
def test_lod_face_counts_and_uvs_stay_valid(unwrapped_mesh: MeshData, fraction: float) -> None:
    (lod,) = build_lods(unwrapped_mesh, [fraction])
    target = round(fraction * unwrapped_mesh.face_count)
    assert abs(lod.face_count - target) <= max(2, 0.02 * target)
    assert lod.uvs is not None and lod.uvs.shape == (lod.vertex_count, 2)
    q = measure_atlas(lod, 512, max_gap_checked=1)
    assert q.uv_in_range and q.overlap_texels == 0 and q.flipped_faces == 0
    # Seams stay put: welding by position gives a closed surface (no cracks opened at seams).
    welded = trimesh.Trimesh(lod.positions, lod.faces, process=True)
    assert welded.is_watertight
    # Shape kept: every LOD vertex lies close to the full-resolution surface.
    # (distance to 200k surface samples, ~0.008 apart: an upper bound without rtree)
    full = trimesh.Trimesh(unwrapped_mesh.positions, unwrapped_mesh.faces)
    samples, _ = trimesh.sample.sample_surface(full, 200_000, seed=0)
    dist, _ = cKDTree(samples).query(lod.positions)
    assert float(dist.max()) < 0.02
    # Charts are not mixed: every LOD chart's texels come from one LOD 0 chart (same chart count or fewer).
    assert chart_labels(lod).max() <= chart_labels(unwrapped_mesh).max()


def test_lod_texture_lookup_matches_full_mesh(unwrapped_mesh: MeshData) -> None:
    """A texture painted as a function of position reads back the same on the LOD."""
    from inference_server.kernels import rasterize_uv

    (lod,) = build_lods(unwrapped_mesh, [0.25])
    size = 512
    raster = rasterize_uv(unwrapped_mesh.uvs, unwrapped_mesh.faces, size, size)
    face_id, bary = raster.face_id, raster.bary
    covered = face_id >= 0
    pos_tex = np.zeros((size, size, 3))
    tri = unwrapped_mesh.positions[unwrapped_mesh.faces[face_id[covered]]]
    pos_tex[covered] = (tri * bary[covered][:, :, None]).sum(1)
    # Sample the "position texture" at LOD face centroids (inside charts) and compare.
    uv_c = lod.uvs[lod.faces].mean(1)
    p_c = lod.positions[lod.faces].mean(1)
    col = np.clip((uv_c[:, 0] * size).astype(int), 0, size - 1)
    row = np.clip((uv_c[:, 1] * size).astype(int), 0, size - 1)
    ok = covered[row, col]
    err = np.linalg.norm(pos_tex[row, col][ok] - p_c[ok], axis=1)
    assert ok.mean() > 0.9
    assert float(np.percentile(err, 95)) < 0.03  # a few texels on a 2-unit object at 512^2


def test_untangle_unfolds_a_dragged_vertex() -> None:
    from inference_server.export.lod import untangle_uvs

    # A hexagon fan around vertex 0; drag the centre's UV outside the ring: folds faces.
    ang = np.linspace(0, 2 * np.pi, 7)[:-1]
    ring = np.stack([0.5 + 0.3 * np.cos(ang), 0.5 + 0.3 * np.sin(ang)], 1)
    uvs = np.vstack([[0.95, 0.5], ring])
    faces = np.array([[0, 1 + i, 1 + (i + 1) % 6] for i in range(6)])
    movable = np.array([True] + [False] * 6)
    fixed = untangle_uvs(faces, uvs, movable)
    t = fixed[faces]
    signed = (t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1]) - (t[:, 2, 0] - t[:, 0, 0]) * (t[:, 1, 1] - t[:, 0, 1])
    assert (signed > 0).all()
    np.testing.assert_array_equal(fixed[1:], uvs[1:])  # border/seam vertices never move

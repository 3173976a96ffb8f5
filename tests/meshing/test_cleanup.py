"""Clean-up chain: floaters, decimation, smoothing, normals, topology checks."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import trimesh

from inference_server.meshing.cleanup import clean_mesh, decimate, remove_floaters, repair_manifold, smooth, \
    vertex_normals
from inference_server.meshing.extract import extract_surface
from inference_server.meshing.topology import face_components, signed_volume, topology_report
from inference_server.pipeline.base import JobCancelled, JobContext


def ball(radius: float, centre: tuple[float, float, float] = (0, 0, 0), res: int = 96
         ) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(centre, np.float32)
    # A speck smaller than a coarse cell would be skipped by design: refine from a fine enough start.
    return extract_surface(lambda p: radius - np.linalg.norm(p - c, axis=1), resolution=res,
                           coarse_resolution=min(res, 96))


def merge(*meshes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    vs, fs, base = [], [], 0
    for v, f in meshes:
        vs.append(v)
        fs.append(f + base)
        base += len(v)
    return np.concatenate(vs), np.concatenate(fs)


@pytest.fixture(scope="module")
def big_sphere() -> tuple[np.ndarray, np.ndarray]:
    """~800k faces, the size of a 384^3 marching-cubes result."""
    return ball(0.8, res=384)


def test_floaters_below_the_fraction_are_removed() -> None:
    main = ball(0.6)
    speck = ball(0.04, (0.9, 0.9, 0.9))
    second = ball(0.2, (-0.8, -0.8, 0.8))
    v, f = merge(main, speck, second)
    fraction = len(speck[1]) / len(f)
    assert 0 < fraction < 0.01
    v2, f2 = remove_floaters(v, f, min_fraction=0.01)
    assert len(f2) == len(main[1]) + len(second[1])
    assert face_components(f2, len(v2))[0] == 2
    assert np.linalg.norm(v2 - 0.9, axis=1).min() > 0.1  # the speck at (0.9, 0.9, 0.9) is gone
    # The largest component survives even an absurd threshold.
    v3, f3 = remove_floaters(v, f, min_fraction=0.99)
    assert len(f3) == len(main[1])


def test_decimate_keeps_a_closed_manifold_within_budget(big_sphere: tuple[np.ndarray, np.ndarray]) -> None:
    v, f = big_sphere
    v2, f2 = decimate(v, f, 20_000)
    assert len(f2) <= 20_000
    report = topology_report(f2, len(v2))
    assert report.closed_manifold and report.unreferenced_vertices == 0
    r = np.linalg.norm(v2, axis=1)
    assert np.abs(r - 0.8).max() < 0.01  # quadric collapse keeps vertices on the sphere
    assert signed_volume(v2, f2) == pytest.approx(4 / 3 * np.pi * 0.8**3, rel=0.01)


def test_clean_mesh_at_800k_faces_is_valid(big_sphere: tuple[np.ndarray, np.ndarray]) -> None:
    # Speed: benchmarks/pipeline.py (docs/performance-notes.md has the reference figures).
    v, f = big_sphere
    assert len(f) > 750_000
    mesh = clean_mesh(v, f, max_faces=200_000)
    assert mesh.face_count <= 200_000 and mesh.faces.dtype == np.uint32 and mesh.positions.dtype == np.float32
    assert topology_report(mesh.faces, mesh.vertex_count).closed_manifold
    tm = trimesh.Trimesh(mesh.positions, mesh.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0
    assert mesh.normals is not None
    radial = mesh.positions / np.linalg.norm(mesh.positions, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", mesh.normals, radial).min() > 0.98


def test_vertex_normals_are_unit_and_outward() -> None:
    v, f = ball(0.5)
    n = vertex_normals(v, f)
    assert np.allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5)
    assert np.einsum("ij,ij->i", n, v / 0.5).min() > 0.99


def test_taubin_smoothing_removes_noise_and_keeps_volume() -> None:
    v, f = ball(0.6)
    rng = np.random.default_rng(0)
    noisy = v + rng.normal(0, 0.004, v.shape).astype(np.float32)
    smoothed = smooth(noisy, f, iterations=10)
    err_before = np.abs(np.linalg.norm(noisy, axis=1) - 0.6).mean()
    err_after = np.abs(np.linalg.norm(smoothed, axis=1) - 0.6).mean()
    assert err_after < 0.4 * err_before
    assert signed_volume(smoothed, f) == pytest.approx(signed_volume(v, f), rel=0.01)


def _tetra(offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32) + offset
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
    return v, f


def test_topology_report_finds_each_defect() -> None:
    v, f = _tetra(np.zeros(3))
    assert topology_report(f, 4).closed_manifold
    assert topology_report(f[:3], 4).boundary_edges == 3
    # Two tetrahedra sharing one vertex: watertight but pinched.
    v2, f2 = _tetra(-np.ones(3, np.float32))
    pinched = np.concatenate([f, np.where(f2 == 0, 0, f2 + 4)])
    report = topology_report(pinched, 8)
    assert report.watertight and report.nonmanifold_vertices == 1 and not report.manifold
    # Three faces on one edge.
    fin = np.concatenate([f, [[0, 1, 4]]])
    assert topology_report(fin, 5).nonmanifold_edges == 1


def test_repair_splits_pinched_vertices() -> None:
    v1, f1 = _tetra(np.zeros(3, np.float32))
    v2, f2 = _tetra(-np.ones(3, np.float32))
    v = np.concatenate([v1, v2])
    f = np.concatenate([f1, np.where(f2 == 0, 0, f2 + 4)])
    rv, rf = repair_manifold(v, f)
    report = topology_report(rf, len(rv))
    assert report.closed_manifold and len(rf) == 8 and len(rv) == 8


def test_clean_mesh_reports_progress_and_cancels() -> None:
    v, f = ball(0.5)
    stages: list[str] = []
    clean_mesh(v, f, max_faces=5_000, ctx=JobContext(lambda s, i, n, m: stages.append(s)))
    assert stages.count("cleanup") == 5
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobCancelled):
        clean_mesh(v, f, max_faces=5_000, ctx=JobContext(None, cancel))


def test_detail_is_kept_only_when_decimation_removes_most_of_the_surface() -> None:
    from skimage import measure

    from inference_server.meshing.cleanup import clean_mesh_with_detail

    g = np.linspace(-1.2, 1.2, 64)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    verts, faces, _, _ = measure.marching_cubes(1.0 - np.sqrt(x * x + y * y + z * z), 0.0)
    n = len(faces)
    mesh, detail = clean_mesh_with_detail(verts, faces[:, ::-1], max_faces=n // 4)
    assert mesh.face_count <= n // 4
    assert detail is not None and detail.face_count == n and detail.normals is not None
    _, none = clean_mesh_with_detail(verts, faces[:, ::-1], max_faces=int(n * 0.6))
    assert none is None


def test_smoothing_turns_no_face_over_on_a_decimated_pillow() -> None:
    """Front-only rectangle (a box's front): decimated to 20k faces, Taubin smoothing used to turn
    about 1 % of the faces over at the pillow's ridges (82-228 here, by grid); now at most a few."""
    from blender_addon.protocol.settings import JobSettings
    from inference_server.geometry.weightfree import build_geometry
    from inference_server.imaging.prepare import prepare_reference
    from inference_server.pipeline.base import JobContext

    image = np.zeros((512, 512, 4), np.uint8)
    image[136:376, 96:416] = (200, 120, 60, 255)
    mesh = build_geometry([prepare_reference(image)], JobSettings(max_faces=20_000), JobContext(), resolution=160)
    v, f = mesh.positions.astype(np.float64), mesh.faces.astype(np.int64)
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    vertex_n = np.zeros_like(v)
    for k in range(3):
        np.add.at(vertex_n, f[:, k], face_n)
    turned = int(((face_n * vertex_n[f].sum(axis=1)).sum(axis=1) < 0).sum())
    assert turned <= 5, turned

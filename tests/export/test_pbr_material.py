"""Stage 7: honest AO, documented roughness/metallic, normal map only with detail, tangents."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from export_helpers import bumpy_sphere
from gltf_validator import validate_glb
from inference_server.assets import Asset, MeshData
from inference_server.export import asset_to_glb
from inference_server.pipeline.base import JobCancelled, JobContext
from inference_server.texturing.pbr import build_material, compute_tangents, surface_samples
from inference_server.uv import unwrap


def _mesh(tm: trimesh.Trimesh) -> MeshData:
    return MeshData(tm.vertices.astype(np.float32), tm.faces.astype(np.uint32), normals=tm.vertex_normals.astype(np.float32))


@pytest.fixture(scope="module")
def torus() -> MeshData:
    tm = trimesh.creation.torus(major_radius=0.7, minor_radius=0.3, major_sections=64, minor_sections=32)
    return unwrap(_mesh(tm), texture_size=512)


def test_occlusion_is_baked_from_geometry(torus: MeshData) -> None:
    material = build_material(torus, np.full((512, 512, 3), 128, np.uint8))
    samples = surface_samples(torus, 512)
    ao = material.orm[..., 0][samples.covered] / 255.0
    radius = np.linalg.norm(samples.points[:, :2], axis=1)  # distance from the torus axis (z)
    # The hole's inner wall faces the other side of the ring: measured 0.64; the outer rim sees the open sky: 1.00.
    assert ao[radius < 0.45].mean() < 0.75
    assert ao[radius > 0.95].mean() > 0.97
    # A sphere is convex: nothing occludes it.
    sphere = unwrap(_mesh(trimesh.creation.icosphere(3)), texture_size=512)
    s_ao = build_material(sphere, np.full((512, 512, 3), 128, np.uint8)).orm[..., 0][surface_samples(sphere, 512).covered]
    assert s_ao.mean() / 255 > 0.98 and s_ao.min() / 255 > 0.9


def test_roughness_metallic_heuristic(torus: MeshData) -> None:
    rng = np.random.default_rng(0)
    base = np.full((512, 512, 3), 90, np.uint8)
    base[:, 256:] = rng.integers(0, 255, (512, 256, 3), dtype=np.uint8)  # right half: busy texture
    m = build_material(torus, base)
    rough = m.orm[..., 1] / 255.0
    assert abs(rough[:, :200].mean() - 0.6) < 0.01  # flat colour -> semi-glossy floor
    assert rough[:, 300:].mean() > 0.9  # textured -> rough
    assert int(m.orm[..., 2].max()) == 0 and m.metallic_factor == 0.0 and m.roughness_factor == 1.0
    assert m.normal is None  # no detail mesh: nothing to carry
    plain = build_material(torus, base, pbr=False)
    assert plain.orm is None and plain.normal is None and plain.base_color is base


@pytest.mark.parametrize("size", [512, 4096])
def test_map_sizes_follow_texture_size(size: int) -> None:
    mesh = unwrap(_mesh(trimesh.creation.icosphere(2)), texture_size=size)
    m = build_material(mesh, np.full((size, size, 3), 200, np.uint8))
    assert m.base_color.shape == (size, size, 3) and m.orm.shape == (size, size, 3)


def test_normal_map_only_with_detail_and_it_reconstructs_the_detail() -> None:
    # Detail: a finely bumped sphere; the low mesh: a coarse smooth sphere.
    hi_tm = trimesh.creation.icosphere(6)
    v = hi_tm.vertices * (1 + 0.02 * np.sin(25 * hi_tm.vertices[:, :1]) * np.sin(25 * hi_tm.vertices[:, 1:2]))
    detail = _mesh(trimesh.Trimesh(v, hi_tm.faces, process=False))
    low = unwrap(_mesh(trimesh.creation.icosphere(3)), texture_size=512)
    base = np.full((512, 512, 3), 180, np.uint8)
    assert build_material(low, base, detail_mesh=low).normal is None  # no detail beyond itself
    m = build_material(low, base, detail_mesh=detail)
    assert m.normal is not None and m.normal.shape == (512, 512, 3)

    # Decode as a glTF viewer does: n = T*x + B*y + N*z with B = cross(N, T) * w.
    samples = surface_samples(low, 512)
    tang = compute_tangents(low)
    corners = low.faces[samples.face]
    t = (tang[corners][:, :, :3] * samples.bary[:, :, None]).sum(1)
    n = samples.normals
    t -= n * (t * n).sum(1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    w = np.sign((tang[corners][:, :, 3] * samples.bary).sum(1))
    b = np.cross(n, t) * w[:, None]
    enc = m.normal[samples.covered].astype(np.float64) / 255 * 2 - 1
    world = enc[:, :1] * t + enc[:, 1:2] * b + enc[:, 2:3] * n
    world /= np.linalg.norm(world, axis=1, keepdims=True)
    hi_n = trimesh.Trimesh(detail.positions, detail.faces, process=False).vertex_normals
    _, idx = trimesh.Trimesh(detail.positions, detail.faces, process=False).kdtree.query(samples.points)
    err = np.degrees(np.arccos(np.clip((world * hi_n[idx]).sum(1), -1, 1)))
    base_err = np.degrees(np.arccos(np.clip((n * hi_n[idx]).sum(1), -1, 1)))
    assert np.median(base_err) > 5.0  # the detail is real
    # ...and the map carries it (left over: 8-bit quantisation and nearest-vertex vs 4-NN normals).
    assert np.median(err) < 3.0 and np.median(err) < 0.4 * np.median(base_err)

    data = asset_to_glb(Asset(low, m, provenance={"backend": "inflate"}))
    report = validate_glb(data)
    assert report["errors"] == 0 and report["warnings"] == 0, report["messages"]


def test_tangents_on_a_plane_follow_gltf_convention() -> None:
    # Quad in the XY plane facing +Z; u grows with +x, glTF v grows downwards (-y).
    pos = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.uint32)
    normals = np.tile(np.array([0, 0, 1], np.float32), (4, 1))
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)
    t = compute_tangents(MeshData(pos, faces, uvs=uv, normals=normals))
    np.testing.assert_allclose(t, np.tile([1, 0, 0, 1], (4, 1)), atol=1e-6)
    mirrored = uv.copy()
    mirrored[:, 0] = 1 - mirrored[:, 0]  # u now grows with -x: a mirrored chart
    t = compute_tangents(MeshData(pos, faces, uvs=mirrored, normals=normals))
    np.testing.assert_allclose(t, np.tile([-1, 0, 0, -1], (4, 1)), atol=1e-6)
    # Any mesh: unit xyz, perpendicular to the normal, w = +-1.
    m = unwrap(bumpy_sphere(3), texture_size=512)
    t = compute_tangents(m)
    assert np.allclose(np.linalg.norm(t[:, :3], axis=1), 1, atol=1e-5)
    assert np.abs((t[:, :3] * m.normals).sum(1)).max() < 1e-4
    assert set(np.unique(t[:, 3])) <= {-1.0, 1.0}


def test_progress_and_cancel(torus: MeshData) -> None:
    seen: list[int] = []
    build_material(torus, np.full((512, 512, 3), 9, np.uint8), ctx=JobContext(lambda s, k, n, m: seen.append(k)))
    assert len(seen) > 10 and seen == sorted(seen)
    ctx = JobContext()
    ctx.cancel()
    with pytest.raises(JobCancelled):
        build_material(torus, np.full((512, 512, 3), 9, np.uint8), ctx=ctx)

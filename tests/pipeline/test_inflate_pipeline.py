"""The weight-free default backend end to end: image in, textured validated asset out."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import ndimage

from inference_server import kernels as K
from blender_addon.protocol.settings import JobSettings
from inference_server.assets import Asset, MeshData
from inference_server.imaging.prepare import prepare_reference
from inference_server.pipeline.base import JobCancelled, JobContext, JobRequest, PipelineError
from inference_server.pipeline.inflate import InflatePipeline
from inference_server.pipeline.stages import PREPARED_SIZE, apply_size
from inference_server.texturing.project import fit_view_camera
from inference_server.kernels.bake.reference import bilinear

S = 512


def sphere_image() -> np.ndarray:
    """A smoothly patterned disk on transparency: the front view of a painted ball."""
    y, x = np.mgrid[0:S, 0:S] + 0.5
    inside = (x - S / 2) ** 2 + (y - S / 2) ** 2 <= (0.4 * S) ** 2
    rgba = np.zeros((S, S, 4), np.uint8)
    colour = np.stack([0.5 + 0.4 * np.sin(x / 19), 0.5 + 0.4 * np.cos(y / 23), 0.5 + 0.3 * np.sin((x + y) / 29)], -1)
    rgba[..., :3] = np.rint(colour * 255)
    rgba[..., 3] = inside * 255
    return rgba


def run(settings: JobSettings, image: np.ndarray | None = None, mesh: MeshData | None = None,
        ctx: JobContext | None = None) -> Asset:
    request = JobRequest([sphere_image() if image is None else image], settings, mesh=mesh, image_names=["ball.png"])
    return InflatePipeline().run(request, ctx or JobContext())


@pytest.fixture(scope="module")
def ball() -> Asset:
    return run(JobSettings(max_faces=20_000, texture_size=1024, options={"inflate_depth": 1.0}, lods=(1.0, 0.5)))


def welded_edges_are_closed(mesh: MeshData) -> bool:
    """Watertight once UV-seam copies are welded: every edge is shared by exactly two faces."""
    _, index = np.unique(np.round(mesh.positions, 6), axis=0, return_inverse=True)
    f = index.reshape(-1)[mesh.faces.astype(np.int64)]
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool((counts == 2).all())


def test_full_job_gives_a_closed_textured_mesh_within_budget(ball: Asset) -> None:
    mesh = ball.mesh
    assert 5_000 < mesh.face_count <= 20_000
    assert welded_edges_are_closed(mesh)
    assert mesh.uvs is not None and mesh.uvs.min() >= 0.0 and mesh.uvs.max() <= 1.0
    assert np.abs(mesh.positions).max() <= 1.0
    # depth 1.0 inflates a disk into a ball: as deep as it is wide (within 10%)
    extent = np.ptp(mesh.positions, axis=0)
    assert abs(extent[2] / extent[0] - 1.0) < 0.1
    assert ball.material is not None and ball.material.base_color.shape == (1024, 1024, 3)
    assert ball.material.orm is not None and ball.material.orm.shape[2] == 3


def test_front_view_of_the_result_matches_the_image(ball: Asset) -> None:
    """Re-render the textured ball from the front: it must reproduce the reference image.

    Bound: measured 39.0 dB for the result, 11.7 dB for the same render mirrored left-right and
    37.1 dB shifted by 2 px (the pattern is smooth at this scale). So this test guards the
    orientation and overall fit of the whole chain (prepare -> geometry -> atlas -> bake -> fill);
    pixel registration is guarded by tests/texturing/test_project.py. 33 dB leaves 6 dB of margin
    for platform differences and sits 20 dB above a mirrored or flipped projection.
    """
    prepared = prepare_reference(sphere_image(), size=PREPARED_SIZE)
    mesh = ball.mesh
    vp = fit_view_camera(mesh.positions, prepared.mask, "front")
    faces = mesh.faces.astype(np.int64)
    raster = K.rasterize(mesh.positions, faces, vp, PREPARED_SIZE, PREPARED_SIZE)
    uv = K.interpolate(raster, faces, mesh.uvs)
    tex = ball.material.base_color.astype(np.float32) / 255.0
    n = tex.shape[0]
    colour = bilinear(tex, uv[..., 0].ravel() * n - 0.5, uv[..., 1].ravel() * n - 0.5).reshape(uv.shape[:2] + (3,))
    inside = ndimage.binary_erosion(prepared.mask & (raster.face_id >= 0), iterations=6)
    expected = prepared.rgba[..., :3].astype(np.float32) / 255.0
    mse = float(np.mean((colour[inside] - expected[inside]) ** 2))
    psnr = 10 * np.log10(1.0 / mse)
    assert inside.sum() > 0.5 * prepared.mask.sum()
    assert psnr > 33.0, psnr


def test_lods_timings_and_provenance(ball: Asset) -> None:
    assert len(ball.lods) == 1
    assert abs(ball.lods[0].face_count / ball.mesh.face_count - 0.5) < 0.05
    for stage in ("prepare", "geometry", "uv_atlas", "texture", "pbr", "lods"):
        assert ball.timings[stage] >= 0.0
    assert ball.provenance["backend"] == "inflate" and ball.provenance["ai_generated"] is True
    assert ball.provenance["source_images"] == ["ball.png"]
    assert ball.provenance["settings"]["max_faces"] == 20_000


def test_provenance_says_what_was_inferred_rather_than_seen(ball: Asset) -> None:
    assert ball.provenance["views"] == ["front"]
    assert ball.provenance["inferred"] == ["depth", "back", "sides"]
    assert ball.provenance["texture_back"] == "mirrored front, blurred"  # a disk is left/right symmetric
    assert "round inflation" in ball.provenance["depth_from"]


def test_provenance_with_a_side_and_a_back_view() -> None:
    image = sphere_image()
    request = JobRequest([image, image, image], JobSettings(mode="geometry", max_faces=5_000))
    asset = InflatePipeline().run(request, JobContext())
    assert asset.provenance["views"] == ["front", "right", "back"]
    assert asset.provenance["inferred"] == ["depth"]  # the back and a side were seen
    assert "visual hull" in asset.provenance["depth_from"] and "texture_back" not in asset.provenance


def test_named_views_with_a_gap_paint_the_back_from_the_back_view() -> None:
    front = sphere_image()
    back = front.copy()
    back[..., :3][back[..., 3] > 0] = (20, 40, 220)  # a blue back, a (whatever colour) front
    settings = JobSettings(max_faces=5_000, texture_size=512, views=("front", "back"))
    asset = InflatePipeline().run(JobRequest([front, back], settings), JobContext())
    assert asset.provenance["views"] == ["front", "back"]
    assert asset.provenance["inferred"] == ["depth", "sides"]  # the back was seen, no side view was given
    assert asset.provenance["texture_back"] == "seen"
    # The back view went to the back: the texels of faces facing -Z are blue, not a side's colours.
    m, mat = asset.mesh, asset.material
    assert mat is not None and m.uvs is not None
    centres = m.positions[m.faces].mean(axis=1)
    back_faces = m.faces[(centres[:, 2] < -0.5 * np.abs(m.positions[:, 2]).max())]
    uv = m.uvs[back_faces].mean(axis=1)
    size = mat.base_color.shape[0]
    texels = mat.base_color[(uv[:, 1] * (size - 1)).astype(int), (uv[:, 0] * (size - 1)).astype(int), :3]
    assert np.median(texels[:, 2]) > 150 and np.median(texels[:, 0]) < 100
    with pytest.raises(PipelineError, match="names 1 view"):
        InflatePipeline().run(JobRequest([front, back], JobSettings(views=("front",))), JobContext())


def test_geometry_only_has_no_material() -> None:
    asset = run(JobSettings(mode="geometry", max_faces=5_000))
    assert asset.material is None and asset.mesh.uvs is None
    assert asset.mesh.face_count <= 5_000 and welded_edges_are_closed(asset.mesh)


def test_size_sets_the_largest_dimension_in_metres() -> None:
    plain = run(JobSettings(mode="geometry", max_faces=5_000))
    sized = run(JobSettings(mode="geometry", max_faces=5_000, size=0.1))
    assert np.ptp(sized.mesh.positions, axis=0).max() == pytest.approx(0.1, rel=1e-5)
    factor = 0.1 / np.ptp(plain.mesh.positions, axis=0).max()
    assert np.allclose(sized.mesh.positions, plain.mesh.positions * factor, atol=1e-6)  # a pure scale


def test_apply_size_scales_the_lods_by_the_same_factor() -> None:
    big = MeshData(np.array([[0, 0, 0], [2, 0, 0], [0, 1, 0]], np.float32), np.array([[0, 1, 2]], np.uint32))
    lod = MeshData(big.positions * 0.5, big.faces.copy())
    assert apply_size([big, lod], 0.5) == pytest.approx(0.25)
    assert np.allclose(big.positions[1], [0.5, 0, 0]) and np.allclose(lod.positions[1], [0.25, 0, 0])
    assert apply_size([big], None) == 1.0 and np.allclose(big.positions[1], [0.5, 0, 0])


def test_texture_only_keeps_a_client_mesh_with_uvs(ball: Asset) -> None:
    client = MeshData(ball.mesh.positions.copy(), ball.mesh.faces.copy(), uvs=ball.mesh.uvs.copy())
    asset = run(JobSettings(mode="texture", texture_size=512), mesh=client)
    assert asset.mesh.vertex_count == client.vertex_count and asset.notes == []
    np.testing.assert_array_equal(asset.mesh.faces, client.faces)
    assert asset.material is not None and asset.material.base_color.shape == (512, 512, 3)


def test_texture_only_reunwraps_a_mesh_without_uvs_and_says_so(ball: Asset) -> None:
    client = MeshData(ball.lods[0].positions.copy(), ball.lods[0].faces.copy())
    asset = run(JobSettings(mode="texture", texture_size=512), mesh=client)
    assert asset.mesh.uvs is not None
    assert any("no usable UVs" in note for note in asset.notes)


def test_texture_only_without_a_mesh_is_a_clear_error() -> None:
    with pytest.raises(PipelineError) as err:
        run(JobSettings(mode="texture"))
    assert err.value.code == "bad_mesh"


def test_cancel_stops_between_stages() -> None:
    cancel = threading.Event()
    stages: list[str] = []

    def on_progress(stage: str, step: int, total: int, message: str) -> None:
        stages.append(stage)
        if stage == "uv_atlas":
            cancel.set()

    with pytest.raises(JobCancelled):
        run(JobSettings(max_faces=5_000, texture_size=512), ctx=JobContext(on_progress, cancel))
    assert "uv_atlas" in stages and "pbr" not in stages


def test_unseparable_image_is_refused() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 4), dtype=np.uint8)
    noise[..., 3] = 255
    with pytest.raises(PipelineError) as err:
        run(JobSettings(), image=noise)
    assert err.value.code == "bad_image"


def test_low_poly_result_carries_the_lost_shape_in_a_normal_map() -> None:
    """A 1,500-face ball keeps the decimated-away curvature as a tangent-space normal map."""
    from inference_server.export import asset_to_glb
    from tests.gltf_validator import validate_glb

    asset = run(JobSettings(max_faces=1_500, texture_size=512, options={"inflate_depth": 1.0}))
    assert asset.material is not None and asset.material.normal is not None
    assert asset.material.normal.shape == (512, 512, 3)
    assert asset.mesh.tangents is not None and asset.mesh.tangents.shape == (asset.mesh.vertex_count, 4)
    # A flat-shading-free normal map is not all "straight up" (128, 128, 255): it bends normals.
    tilt = np.abs(asset.material.normal[..., :2].astype(int) - 128).max()
    assert tilt > 10
    report = validate_glb(asset_to_glb(asset))
    assert report["errors"] == 0 and report["warnings"] == 0, report["messages"]

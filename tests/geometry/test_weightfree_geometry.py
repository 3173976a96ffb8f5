"""Weight-free geometry: silhouettes inflate into the expected closed solids, in the glTF frame."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from blender_addon.protocol.settings import JobSettings
from inference_server.assets import MeshData
from inference_server.geometry.silhouette import poisson_height, signed_distance
from inference_server.geometry.weightfree import build_geometry
from inference_server.imaging.prepare import PreparedImage, prepare_reference
from inference_server.meshing.topology import topology_report
from inference_server.pipeline.base import JobCancelled, JobContext, PipelineError

SIZE = 1024


def render_sphere(size: int = SIZE, radius: float = 300.0) -> np.ndarray:
    """An orthographic, shaded picture of a sphere with an anti-aliased alpha cut-out."""
    yy, xx = np.mgrid[0:size, 0:size]
    dx, dy = (xx + 0.5 - size / 2) / radius, (yy + 0.5 - size / 2) / radius
    r2 = dx**2 + dy**2
    shade = np.clip(np.sqrt(np.clip(1 - r2, 0, 1)) * 0.8 + 0.2, 0, 1)  # Lambert from the camera
    img = np.zeros((size, size, 4), np.uint8)
    img[..., :3] = (shade[..., None] * np.array([220, 120, 60])).astype(np.uint8)
    img[..., 3] = (np.clip((1 - np.sqrt(r2)) * radius + 0.5, 0, 1) * 255).astype(np.uint8)
    return img


def ellipse_rgba(width: float, height: float, size: int = 512) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    inside = ((xx + 0.5 - size / 2) / (width / 2)) ** 2 + ((yy + 0.5 - size / 2) / (height / 2)) ** 2 <= 1
    img = np.zeros((size, size, 4), np.uint8)
    img[inside] = (90, 90, 200, 255)
    return img


def assert_valid(mesh: MeshData, budget: int) -> None:
    assert mesh.face_count <= budget
    report = topology_report(mesh.faces, mesh.vertex_count)
    assert report.closed_manifold, report
    tm = trimesh.Trimesh(mesh.positions, mesh.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0
    assert np.abs(mesh.positions).max() <= 1.0
    assert mesh.normals is not None and mesh.normals.shape == mesh.positions.shape


@pytest.fixture(scope="module")
def sphere_image() -> PreparedImage:
    return prepare_reference(render_sphere())


def test_sphere_picture_comes_back_as_a_sphere(sphere_image: PreparedImage) -> None:
    timings: dict[str, float] = {}
    mesh = build_geometry([sphere_image], JobSettings(options={"inflate_depth": 1.0}), JobContext(), timings=timings)
    assert_valid(mesh, JobSettings().max_faces)
    # The silhouette fills 95% of the canvas, which maps to [-1, 1]: radius 0.95, centred.
    radius = 0.95
    v = mesh.positions
    surface = np.random.default_rng(0).normal(size=(100_000, 3))
    surface = radius * surface / np.linalg.norm(surface, axis=1, keepdims=True)
    to_sphere = np.abs(np.linalg.norm(v, axis=1) - radius)
    # Coverage against points on the mesh's faces, not its vertices: the face budget follows the
    # shape (20k faces for a ball), so vertices are ~0.02 apart.
    on_mesh = trimesh.sample.sample_surface(trimesh.Trimesh(v, mesh.faces, process=False), 400_000, seed=0)[0]
    to_mesh, _ = cKDTree(on_mesh).query(surface)
    chamfer = 0.5 * (to_sphere.mean() + to_mesh.mean())
    # Bound: one extraction cell is 2.1 / 256 = 0.0082 and the height map pixel 2 / 256 = 0.0078.
    # Marching cubes on a smooth field and the sub-pixel outline err well below a cell; what is
    # left is the sampling of the mesh (400k points: a random sphere point lies ~0.002 from the
    # nearest sample). Half a cell (0.004) catches any real shape error: a 2:1
    # lens, a shift by one map pixel or a 1% scale error each exceed it.
    assert chamfer < 0.004, chamfer
    # No bumps or dents beyond about one cell anywhere: the solid is the union of balls centred
    # on map pixels, so its top can sit up to ~0.8 map pixel (0.006) low where the best centre
    # falls between pixels; 0.012 (1.3 % of the radius) is that plus one cell of extraction.
    assert to_sphere.max() < 0.012
    assert set(timings) == {"geometry.silhouette", "geometry.extract", "geometry.cleanup"}


@pytest.mark.parametrize("depth", [0.2, 0.5, 1.5])
def test_disk_thickness_follows_the_depth_setting(depth: float) -> None:
    disk = prepare_reference(ellipse_rgba(300, 300))
    mesh = build_geometry([disk], JobSettings(options={"inflate_depth": depth}, max_faces=30_000), JobContext())
    assert_valid(mesh, 30_000)
    extent = mesh.positions.max(axis=0) - mesh.positions.min(axis=0)
    diameter = 0.5 * (extent[0] + extent[1])
    # Documented: thickness = inflate_depth x diameter for a disk (1.5 exceeds the frame and is shrunk,
    # which keeps the ratio).
    assert extent[2] / diameter == pytest.approx(depth, rel=0.02)
    assert extent[0] == pytest.approx(extent[1], rel=0.005)
    # The rim lies within about 1.5 extraction cells (2.1 / 256) of the outline (a thin lens's sharp
    # rim is where marching cubes errs most); a depth beyond the frame is shrunk to 0.95.
    assert np.abs(mesh.positions).max() == pytest.approx(0.95, abs=0.012)


def l_shape_rgba(size: int = 600) -> np.ndarray:
    """An upright bar with a foot to the right and a separate dot top-right: frame and parts test."""
    img = np.zeros((size, size, 4), np.uint8)
    img[100:500, 100:180] = (200, 30, 30, 255)  # vertical bar
    img[420:500, 180:420] = (200, 30, 30, 255)  # foot to the right, at the bottom
    yy, xx = np.mgrid[0:size, 0:size]
    img[np.hypot(xx - 400, yy - 160) < 50] = (30, 30, 200, 255)  # disconnected dot, top right
    return img


def test_non_convex_shape_is_valid_oriented_and_keeps_both_parts() -> None:
    prepared = prepare_reference(l_shape_rgba())
    mesh = build_geometry([prepared], JobSettings(max_faces=20_000), JobContext())
    assert_valid(mesh, 20_000)
    tm = trimesh.Trimesh(mesh.positions, mesh.faces, process=False)
    parts = sorted(tm.split(only_watertight=True), key=lambda m: m.area)
    assert len(parts) == 2
    dot = parts[0].centroid
    # Image right -> +X, image up -> +Y: the dot (top right in the picture) is at +X, +Y.
    assert dot[0] > 0.3 and dot[1] > 0.3
    # The foot runs along the bottom: the lowest vertices span to the right.
    low = mesh.positions[mesh.positions[:, 1] < -0.6]
    assert low[:, 0].max() > 0.5 and low[:, 0].min() < -0.3
    # Thin parts get round cross-sections of their own width: the bar (80 px wide of 400 px tall)
    # becomes a tube as deep as it is wide (the union of its inscribed balls), not a lens.
    bar = mesh.positions[(mesh.positions[:, 1] > 0.0) & (mesh.positions[:, 0] < -0.3)]
    bar_width = bar[:, 0].max() - bar[:, 0].min()
    bar_depth = bar[:, 2].max() - bar[:, 2].min()
    assert bar_depth == pytest.approx(bar_width, rel=0.05)


def test_separate_thin_part_is_kept() -> None:
    """A stick about one extraction cell wide, apart from the body: the coarse grid steps over it,
    the outline seeds bring it back."""
    img = np.zeros((SIZE, SIZE, 4), np.uint8)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    img[np.hypot(xx - 600, yy - 500) < 150] = 255
    img[100:900, 300:306] = 255  # 7 px wide after preparation: 0.014 world units
    mesh = build_geometry([prepare_reference(img)], JobSettings(max_faces=30_000), JobContext())
    assert_valid(mesh, 30_000)
    parts = trimesh.Trimesh(mesh.positions, mesh.faces, process=False).split(only_watertight=True)
    stick = min(parts, key=lambda m: m.area)
    assert len(parts) == 2
    assert stick.bounds[1, 1] - stick.bounds[0, 1] > 1.8  # runs the whole height
    assert stick.bounds[0, 0] == pytest.approx(-0.53, abs=0.02)


def random_blobs(seed: int, size: int = 512) -> np.ndarray:
    """A union of random ellipses minus a few random holes: varied outlines, parts and genus."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    inside = np.zeros((size, size), bool)

    def ellipse(scale: float) -> np.ndarray:
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        a, b = rng.uniform(0.03, scale, 2) * size
        t = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        return (u / a) ** 2 + (v / b) ** 2 <= 1

    for _ in range(rng.integers(2, 7)):
        inside |= ellipse(0.25)
    for _ in range(rng.integers(0, 3)):
        inside &= ~ellipse(0.06)
    img = np.zeros((size, size, 4), np.uint8)
    img[inside] = (120, 200, 40, 255)
    return img


@pytest.mark.parametrize("seed", range(6))
def test_random_silhouettes_give_closed_manifolds_within_budget(seed: int) -> None:
    prepared = prepare_reference(random_blobs(seed), size=512)
    budget = 4_000 + 3_000 * seed
    mesh = build_geometry([prepared], JobSettings(max_faces=budget, options={"inflate_depth": 0.2 + 0.3 * seed}),
                          JobContext(), resolution=128)
    assert_valid(mesh, budget)


def test_side_view_bounds_the_depth(sphere_image: PreparedImage) -> None:
    """Front: a circle. Right view: an ellipse 0.4 as wide as tall -> a flattened solid."""
    side = prepare_reference(ellipse_rgba(120, 300))
    # 192^3 is plenty for extents to 1% and keeps the test quick.
    mesh = build_geometry([sphere_image, side], JobSettings(max_faces=30_000), JobContext(), resolution=192)
    assert_valid(mesh, 30_000)
    extent = mesh.positions.max(axis=0) - mesh.positions.min(axis=0)
    assert extent[1] == pytest.approx(1.9, rel=0.01)
    # The side silhouette, scaled to the front's height (1.9), is 0.4 x 1.9 = 0.76 deep.
    assert extent[2] == pytest.approx(0.4 * 1.9, rel=0.03)
    # A deep side view deepens the default inflation: circle + circle -> sphere, not a 2:1 lens.
    round_side = prepare_reference(ellipse_rgba(300, 300))
    deep = build_geometry([sphere_image, round_side], JobSettings(max_faces=30_000), JobContext(), resolution=192)
    extent = deep.positions.max(axis=0) - deep.positions.min(axis=0)
    assert extent[2] == pytest.approx(extent[0], rel=0.02)


def test_right_and_left_views_face_the_right_way(sphere_image: PreparedImage) -> None:
    """Right view: image x runs towards -Z; left view: towards +Z; both agree on one object.

    The side silhouette is an ellipse with a stub on its image-right side at mid height.
    Registration centres the whole silhouette on z = 0, so away from the stub the ellipse
    body sits on the side opposite the stub: -Z's opposite (+Z) for a right view.
    """
    img = ellipse_rgba(120, 300)
    img[240:272, 300:360] = (90, 90, 200, 255)  # the stub, at mid height on the image's right
    stub = prepare_reference(img)
    # The same object seen from the left shows the stub on the image's left.
    mirrored = prepare_reference(np.ascontiguousarray(img[:, ::-1]))
    back = prepare_reference(ellipse_rgba(300, 300))
    for images, body_side in (([sphere_image, stub], 1.0), ([sphere_image, mirrored, back, stub], -1.0)):
        mesh = build_geometry(images, JobSettings(max_faces=20_000), JobContext(), resolution=128)
        v = mesh.positions
        upper = v[(v[:, 1] > 0.3) & (v[:, 1] < 0.6), 2]
        # The stub is 0.2 tall around y = 0; its end is a flat cap, which decimation leaves with
        # vertices only at its corners, so look at the whole band it covers.
        middle = v[np.abs(v[:, 1]) < 0.09, 2] * -body_side  # positive towards the stub
        assert body_side * 0.5 * (upper.min() + upper.max()) > 0.1
        assert middle.max() > 0.45  # the stub reaches half the depth of 1.9 * (164 / 300) / 2


def test_default_settings_at_1024_give_a_valid_mesh(sphere_image: PreparedImage) -> None:
    # Speed is measured in benchmarks/pipeline.py, not asserted here.
    mesh = build_geometry([sphere_image], JobSettings(), JobContext())
    assert_valid(mesh, 200_000)


def test_progress_covers_every_stage_and_cancel_stops_it(sphere_image: PreparedImage) -> None:
    stages: list[str] = []
    build_geometry([sphere_image], JobSettings(max_faces=10_000), JobContext(lambda s, i, n, m: stages.append(s)))
    assert {"geometry", "extract", "cleanup"} <= set(stages)

    cancel = threading.Event()

    def cancel_during_extraction(stage: str, step: int, total: int, message: str) -> None:
        if stage == "extract" and step == 1:
            cancel.set()

    with pytest.raises(JobCancelled):
        build_geometry([sphere_image], JobSettings(), JobContext(cancel_during_extraction, cancel))


def test_hairline_silhouette_is_bad_image() -> None:
    img = np.zeros((SIZE, SIZE, 4), np.uint8)
    img[100:900, 500:503] = 255  # 3 px wide, 800 tall: under one Poisson-map pixel once scaled
    with pytest.raises(PipelineError, match="too thin") as exc:
        build_geometry([prepare_reference(img)], JobSettings(), JobContext())
    assert exc.value.code == "bad_image"


def test_no_images_is_bad_image() -> None:
    with pytest.raises(PipelineError) as exc:
        build_geometry([], JobSettings(), JobContext())
    assert exc.value.code == "bad_image"


def test_poisson_height_of_a_disk_is_a_hemisphere() -> None:
    """u = R^2 - r^2 for a disk: checks the ghost-fluid boundary to sub-pixel accuracy."""
    size, full = 128, 1024
    yy, xx = np.mgrid[0:full, 0:full]
    radius_full = 400.3
    mask = np.hypot(xx + 0.5 - full / 2, yy + 0.5 - full / 2) <= radius_full
    phi = signed_distance(mask, size)
    u = poisson_height(phi)
    radius = radius_full * size / full
    c = (np.arange(size) + 0.5 - size / 2)
    r2 = c[None, :] ** 2 + c[:, None] ** 2
    inside = r2 < (radius - 1) ** 2
    assert np.abs(u[inside] - (radius**2 - r2[inside])).max() < 0.01 * radius**2
    assert np.sqrt(u.max()) == pytest.approx(radius, rel=0.005)

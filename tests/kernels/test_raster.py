"""Rasterizer: closed forms, the reference oracle, and the fill rule."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference_server import kernels as K
from inference_server.kernels.meshes import cube, sphere_with_faces, uv_sphere
from inference_server.kernels.raster._setup import SUBPIXEL

BACKENDS = ["reference", "cpu"]


def ndc_of_pixel(px: float, py: float, w: int, h: int) -> tuple[float, float]:
    """NDC (x, y) of screen point (px, py) (pixels, y down)."""
    return px / w * 2 - 1, 1 - py / h * 2


def pixel_centres(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w]
    return x + 0.5, y + 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_triangle_coverage_and_barycentrics(backend: str) -> None:
    w, h = 40, 30
    # Screen-space vertices on the 1/256 grid, not through any pixel centre; identity camera.
    scr = np.round(np.array([[3.3, 2.7], [35.1, 9.4], [12.6, 27.2]]) * SUBPIXEL) / SUBPIXEL
    ndc = np.array([ndc_of_pixel(x, y, w, h) for x, y in scr])
    pos = np.column_stack([ndc, [0.1, 0.3, -0.5]])
    r = K.rasterize(pos, [[0, 1, 2]], np.eye(4), w, h, backend=backend)
    # Closed form: solve the barycentrics of every pixel centre in float64.
    px, py = pixel_centres(w, h)
    m = np.array([[scr[0, 0], scr[1, 0], scr[2, 0]], [scr[0, 1], scr[1, 1], scr[2, 1]], [1, 1, 1]])
    b = np.linalg.solve(m, np.stack([px.ravel(), py.ravel(), np.ones(px.size)])).T.reshape(h, w, 3)
    inside = (b > 0).all(axis=2)
    assert np.array_equal(r.face_id >= 0, inside)
    assert inside.sum() > 100
    np.testing.assert_allclose(r.bary[inside], b[inside], atol=1e-6)
    expected_depth = (b @ np.array([0.1, 0.3, -0.5]) + 1) / 2
    np.testing.assert_allclose(r.depth[inside], expected_depth[inside], atol=1e-6)
    assert np.isinf(r.depth[~inside]).all() and (r.bary[~inside] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["orthographic", "perspective"])
def test_cube_depth_map(backend: str, kind: str) -> None:
    half, dist, near, far, res = 0.4, 1.8, 0.1, 10.0, 64
    pos, faces, _ = cube(half, subdiv=2)
    if kind == "orthographic":
        vp = K.orthographic("front", 0.55, distance=dist, near=near, far=far)
        # Front face at eye distance dist - half: window depth is linear in eye distance.
        z_face = (dist - half - near) / (far - near)
        extent = half / 0.55  # NDC half width of the face
    else:
        vp = K.perspective("front", 40.0, distance=dist, near=near, far=far)
        d = dist - half
        z_face = ((far + near) / (far - near) - 2 * far * near / ((far - near) * d) + 1) / 2
        extent = half / d / np.tan(np.radians(20.0))
    r = K.rasterize(pos, faces, vp, res, res, backend=backend)
    px, py = pixel_centres(res, res)
    nx, ny = px / res * 2 - 1, 1 - py / res * 2
    on_face = (np.abs(nx) < extent) & (np.abs(ny) < extent)
    assert np.array_equal(r.face_id >= 0, on_face)
    np.testing.assert_allclose(r.depth[on_face], z_face, rtol=1e-6)
    # Only the front side (+Z normal) is visible.
    tri = pos[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (normals[r.face_id[on_face]][:, 2] > 0).all()


@pytest.mark.parametrize("backend", ["cpu"])
def test_sphere_normal_map(backend: str) -> None:
    res, radius = 128, 0.45
    pos, faces, _ = uv_sphere(96, 192, radius)
    r = K.rasterize(pos, faces, K.orthographic("front"), res, res, backend=backend)
    nmap = K.interpolate(r, faces, pos / radius, backend=backend)
    px, py = pixel_centres(res, res)
    x, y = (px / res * 2 - 1) * 0.55, (1 - py / res * 2) * 0.55
    rho2 = (x * x + y * y) / radius**2
    inner = rho2 < 0.8**2
    expected = np.stack([x / radius, y / radius, np.sqrt(np.clip(1 - rho2, 0, None))], -1)
    assert (r.face_id[inner] >= 0).all()
    err = np.abs(nmap[inner] - expected[inner]).max()
    assert err < 5e-3, err  # chord error of a 96 x 192 tessellation
    # Silhouette: coverage matches the disk's area within the outline's pixel count.
    assert abs((r.face_id >= 0).sum() - np.pi * (radius / 0.55 * res / 2) ** 2) < 2 * np.pi * radius / 0.55 * res / 2


def _grid_mesh(n: int, jitter: float, seed: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """A flat n x n grid over the screen rectangle [4, w-4] x [4, h-4] (pixels), vertices on the
    1/256 grid, interior ones jittered and many exactly on pixel centres or edges."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.linspace(4, w - 4, n + 1), np.linspace(4, h - 4, n + 1))
    inner = (slice(1, -1), slice(1, -1))
    gx[inner] += rng.integers(-2, 3, gx[inner].shape) * jitter
    gy[inner] += rng.integers(-2, 3, gy[inner].shape) * jitter
    scr = np.round(np.stack([gx.ravel(), gy.ravel()], 1) * SUBPIXEL) / SUBPIXEL
    ndc = np.column_stack([scr[:, 0] / w * 2 - 1, 1 - scr[:, 1] / h * 2, np.zeros(len(scr))])
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    flip = rng.random(a.shape) < 0.5  # both diagonals and both windings
    t1 = np.where(flip[..., None], np.stack([a, b, d], -1), np.stack([a, c, b], -1))
    t2 = np.where(flip[..., None], np.stack([a, d, c], -1), np.stack([b, c, d], -1))
    return ndc, np.concatenate([t1.reshape(-1, 3), t2.reshape(-1, 3)])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.37])
def test_shared_edges_no_cracks_no_double_coverage(backend: str, jitter: float) -> None:
    w, h, n = 44, 36, 6
    pos, faces = _grid_mesh(n, jitter, seed=int(jitter * 100), w=w, h=h)
    count = np.zeros((h, w), np.int32)
    for f in range(len(faces)):  # each face alone: counts every pixel each face claims
        count += K.rasterize(pos, faces[f : f + 1], np.eye(4), w, h, backend=backend).face_id >= 0
    px, py = pixel_centres(w, h)
    # The grid's outline is the rectangle [4, w-4] x [4, h-4]; its left/top edges are included.
    inside = (px >= 4) & (px < w - 4) & (py >= 4) & (py < h - 4)
    assert count.max() == 1, "a pixel centre was claimed by two faces"
    assert np.array_equal(count == 1, inside), "crack or leak along the shared edges"
    together = K.rasterize(pos, faces, np.eye(4), w, h, backend=backend)
    assert np.array_equal(together.face_id >= 0, inside)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fan_around_pixel_centre(backend: str) -> None:
    """Eight triangles meeting at a vertex that sits exactly on a pixel centre: it belongs to one."""
    w = h = 16
    centre = np.array([8.5, 8.5])
    ring = centre + 5 * np.array([[np.cos(a), np.sin(a)] for a in np.arange(8) * np.pi / 4])
    scr = np.round(np.vstack([centre, ring]) * SUBPIXEL) / SUBPIXEL
    pos = np.column_stack([scr[:, 0] / w * 2 - 1, 1 - scr[:, 1] / h * 2, np.zeros(9)])
    faces = np.array([[0, 1 + i, 1 + (i + 1) % 8] for i in range(8)])
    count = sum(K.rasterize(pos, faces[i : i + 1], np.eye(4), w, h, backend=backend).face_id >= 0 for i in range(8))
    assert count[8, 8] == 1
    assert count.max() == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_offscreen_and_behind_camera(backend: str) -> None:
    w = h = 32
    pos = np.array([
        [-0.5, -0.5, 0], [0.5, -0.5, 0], [0.0, 0.5, 0],  # 0-2 a real triangle
        [-0.9, -0.9, 0], [0.9, 0.9, 0], [0.0, 0.0, 0],  # 3-5 collinear
        [3, 3, 0], [4, 3, 0], [3, 4, 0],  # 6-8 off-screen
        [np.nan, 0, 0], [np.inf, 1, 0],  # 9-10 not finite
        [-0.5, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.5, 0.0],  # 11-13 partly off-screen
    ])
    faces = np.array([[0, 0, 1], [3, 4, 5], [6, 7, 8], [9, 10, 0], [1, 1, 1]])
    r = K.rasterize(pos, faces, np.eye(4), w, h, backend=backend)
    assert (r.face_id == -1).all()
    # Partly off-screen: clipped to the screen, same as the reference.
    r2 = K.rasterize(pos, np.array([[11, 12, 13], [0, 1, 2]]), np.eye(4), w, h, backend=backend)
    ref = K.rasterize(pos, np.array([[11, 12, 13], [0, 1, 2]]), np.eye(4), w, h, backend="reference")
    assert np.array_equal(r2.face_id, ref.face_id) and (r2.face_id == 0).any() and (r2.face_id == 1).any()
    # Behind a perspective camera (w <= 0) and beyond the far plane: dropped.
    vp = K.perspective("front", 40.0, distance=1.0, near=0.1, far=3.0)
    behind = np.array([[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.0, 0.5, 2.0], [-0.5, -0.5, -5], [0.5, -0.5, -5], [0, 0.5, -5]])
    assert (K.rasterize(behind, [[0, 1, 2], [3, 4, 5]], vp, w, h, backend=backend).face_id == -1).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_meshes(backend: str) -> None:
    r = K.rasterize(np.zeros((0, 3)), np.zeros((0, 3), int), np.eye(4), 8, 6, backend=backend)
    assert r.face_id.shape == (6, 8) and (r.face_id == -1).all() and np.isinf(r.depth).all()
    r = K.rasterize(np.zeros((5, 3)), np.zeros((0, 3), int), np.eye(4), 8, 6, backend=backend)
    assert (r.face_id == -1).all()
    assert K.interpolate(r, np.zeros((0, 3), int), np.zeros((5, 2)), backend=backend).shape == (6, 8, 2)
    with pytest.raises(ValueError):
        K.rasterize(np.zeros((3, 3)), [[0, 1, 3]], np.eye(4), 8, 8, backend=backend)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), kind=st.sampled_from(["ortho", "persp"]))
def test_cpu_matches_reference_on_random_soups(seed: int, n: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-0.7, 0.7, (3 * n, 3))
    faces = rng.integers(0, 3 * n, (n, 3))
    vp = K.orthographic("right") if kind == "ortho" else K.perspective("top", 50.0, distance=1.5)
    ref = K.rasterize(pos, faces, vp, 37, 29, backend="reference")
    cpu = K.rasterize(pos, faces, vp, 37, 29, backend="cpu")
    assert np.array_equal(ref.face_id, cpu.face_id)
    np.testing.assert_array_equal(ref.depth, cpu.depth)
    np.testing.assert_allclose(ref.bary, cpu.bary, atol=1e-6)
    attr = rng.normal(size=(3 * n, 4))
    np.testing.assert_allclose(
        K.interpolate(ref, faces, attr, backend="reference"), K.interpolate(cpu, faces, attr, backend="cpu"), atol=1e-5
    )


def test_rasterize_uv_texel_centres() -> None:
    w, h = 32, 16
    uv = np.array([[0, 0], [0.5, 0], [0.5, 0.25], [0, 0.25]], np.float32)
    for backend in BACKENDS:
        r = K.rasterize_uv(uv, [[0, 3, 2], [0, 2, 1]], w, h, backend=backend)
        covered = r.face_id >= 0
        # Texel (row, col) centre at (u, v) = ((col + .5) / W, (row + .5) / H): rows 0-3, cols 0-15.
        expected = np.zeros((h, w), bool)
        expected[:4, :16] = True
        assert np.array_equal(covered, expected)
        uvi = K.interpolate(r, [[0, 3, 2], [0, 2, 1]], uv, backend=backend)
        rows, cols = np.nonzero(covered)
        np.testing.assert_allclose(uvi[rows, cols], np.column_stack([(cols + 0.5) / w, (rows + 0.5) / h]), atol=1e-6)


def test_million_faces_bounded_memory() -> None:
    pos, faces, _ = sphere_with_faces(1_000_000, radius=0.45)
    assert len(faces) >= 1_000_000
    tracemalloc.start()
    try:
        r = K.rasterize(pos, faces, K.orthographic("front"), 512, 512)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Outputs are 512^2 * 24 bytes = 6 MB; vertex set-up is ~80 bytes per vertex (0.5M vertices).
    assert peak < 120e6, peak
    area = np.pi * (0.45 / 0.55 * 256) ** 2
    assert abs((r.face_id >= 0).sum() - area) < 2 * np.pi * 0.45 / 0.55 * 256


def test_torch_cpu_tensors_take_the_cpu_path() -> None:
    torch = pytest.importorskip("torch")
    pos, faces, _ = uv_sphere(8, 16, 0.4)
    r = K.rasterize(torch.from_numpy(pos), torch.from_numpy(faces), K.orthographic("front"), 24, 24)
    assert isinstance(r.face_id, torch.Tensor) and r.face_id.device.type == "cpu"
    ref = K.rasterize(pos, faces, K.orthographic("front"), 24, 24, backend="reference")
    assert np.array_equal(r.face_id.numpy(), ref.face_id)


def test_cameras() -> None:
    views = K.upstream_views()
    assert [v.name for v in views] == ["front", "right", "back", "left", "top", "bottom"]
    assert [v.weight for v in views] == [1, 0.1, 0.5, 0.1, 0.05, 0.05]
    # The front camera maps +X to the right of the image and +Y up, the box is +-0.55.
    p = views[0].view_proj @ np.array([0.55, 0.55, 0.0, 1.0])
    np.testing.assert_allclose(p[:2] / p[3], [1, 1])
    right = views[1].view_proj @ np.array([0.0, 0.0, -0.55, 1.0])  # camera on +X: image x is -Z
    np.testing.assert_allclose(right[0] / right[3], 1)
    for v in views:
        info = K.camera_info(v.view_proj)
        assert info.orthographic
        side = {"front": [0, 0, 1], "right": [1, 0, 0], "back": [0, 0, -1], "left": [-1, 0, 0], "top": [0, 1, 0], "bottom": [0, -1, 0]}
        np.testing.assert_allclose(info.toward_camera, side[v.name], atol=1e-12)
    info = K.camera_info(K.perspective("right", distance=2.0))
    assert not info.orthographic
    np.testing.assert_allclose(info.eye, [2, 0, 0], atol=1e-9)

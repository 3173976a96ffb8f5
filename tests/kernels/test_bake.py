"""Back-projection: round trips, the cos^k rule, rejections, and the reference oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference_server import kernels as K
from inference_server.kernels.meshes import cube, uv_sphere


def colour_of(p: np.ndarray) -> np.ndarray:
    """A smooth procedural colour of world position (N.., 3) -> (N.., 3) float32 in [0, 1]."""
    return (0.5 + 0.45 * np.sin(5.0 * np.asarray(p, np.float64) + np.array([0.0, 1.0, 2.0]))).astype(np.float32)


def render_views(pos: np.ndarray, faces: np.ndarray, res: int) -> list[K.BakeView]:
    views = []
    for v in K.upstream_views():
        r = K.rasterize(pos, faces, v.view_proj, res, res)
        views.append(K.BakeView(K.interpolate(r, faces, colour_of(pos)), v.view_proj, v.weight))
    return views


@pytest.fixture(scope="module")
def sphere() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return uv_sphere(32, 64, 0.45, uv_margin=0.02)  # 4k faces: the reference rasterizer loops in Python


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_baking_own_views_reproduces_known_texture(sphere, backend: str) -> None:  # type: ignore[no-untyped-def]
    pos, faces, uv = sphere
    size = 128
    res = K.bake_views(pos, faces, uv, render_views(pos, faces, 192), size, backend=backend)
    uvr = K.rasterize_uv(uv, faces, size, size)
    expected = colour_of(K.interpolate(uvr, faces, pos))
    m = res.mask
    # Six axis views see the whole sphere within 75 degrees except small corners near the diagonals.
    assert m.sum() > 0.95 * (uvr.face_id >= 0).sum()
    assert not (m & (uvr.face_id < 0)).any()
    # Error: bilinear sampling of a smooth colour in 192^2 views (1 pixel = 0.0057 units, slope <= 2.3).
    err = np.abs(res.texture[m] - expected[m])
    assert err.max() < 0.02 and err.mean() < 2e-3, (err.max(), err.mean())
    assert (res.texture[~m] == 0).all() and (res.weight[~m] == 0).all() and (res.weight[m] > 0).all()


def test_cpu_matches_reference(sphere) -> None:  # type: ignore[no-untyped-def]
    pos, faces, uv = uv_sphere(16, 32, 0.45, uv_margin=0.02)
    views = render_views(pos, faces, 96)
    views.append(K.BakeView(views[0].image, K.perspective("front", 40.0, distance=2.0), 0.7))
    a = K.bake_views(pos, faces, uv, views, 64, backend="reference")
    b = K.bake_views(pos, faces, uv, views, 64, backend="cpu")
    assert np.array_equal(a.mask, b.mask)
    np.testing.assert_allclose(a.texture, b.texture, atol=1e-5)
    np.testing.assert_allclose(a.weight, b.weight, rtol=1e-5)


def _tilted_plane(angle_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A unit quad facing +Z rotated by angle_deg about Y, UVs over the whole atlas."""
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    quad = np.array([[-0.3, -0.3, 0], [0.3, -0.3, 0], [0.3, 0.3, 0], [-0.3, 0.3, 0]]) @ rot.T
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)
    return quad.astype(np.float32), np.array([[0, 1, 2], [0, 2, 3]]), uv


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_cos_power_weighting_closed_form(backend: str) -> None:
    pos, faces, uv = _tilted_plane(30.0)  # normal at 30 deg from +Z, 60 deg from +X
    red = np.zeros((64, 64, 3), np.float32)
    red[..., 0] = 1
    blue = np.zeros((64, 64, 3), np.float32)
    blue[..., 2] = 1
    views = [K.BakeView(red, K.orthographic("front"), 1.0), K.BakeView(blue, K.orthographic("right"), 0.5)]
    res = K.bake_views(pos, faces, uv, views, 16, backend=backend, erode_px=0)
    wf, wr = 1.0 * math.cos(math.radians(30)) ** 4, 0.5 * math.cos(math.radians(60)) ** 4
    assert res.mask.all()
    np.testing.assert_allclose(res.texture[..., 0], wf / (wf + wr), rtol=1e-5)
    np.testing.assert_allclose(res.texture[..., 2], wr / (wf + wr), rtol=1e-5)
    np.testing.assert_allclose(res.weight, wf + wr, rtol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_grazing_angle_rejected(backend: str) -> None:
    img = np.ones((64, 64, 3), np.float32)
    for angle, seen in [(74.0, True), (76.0, False), (120.0, False)]:
        pos, faces, uv = _tilted_plane(angle)
        res = K.bake_views(pos, faces, uv, [K.BakeView(img, K.orthographic("front"), 1.0)], 16, backend=backend, erode_px=0)
        assert res.mask.any() == seen, angle


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_occluded_and_edge_bands_rejected(backend: str) -> None:
    """A small quad in front of a big one: the big one is not baked where hidden, nor within the
    erosion band around the occluder's depth edge, nor at its own silhouette."""
    big = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], np.float32)
    small = big * np.float32(0.4) + np.array([0, 0, 0.3], np.float32)
    pos = np.vstack([big, small])
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    # Big quad's UVs cover the atlas; the small one is squeezed into a corner texel (not baked here).
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0], [0, 0], [0.001, 0], [0.001, 0.001], [0, 0.001]], np.float32)
    res_px = 110  # 0.01 world units per pixel over the +-0.55 box
    img = np.ones((res_px, res_px, 3), np.float32)
    view = K.BakeView(img, K.orthographic("front"), 1.0)
    size = 100  # texel (r, c) of the big quad sits at x = -0.5 + (c + .5) / 100, y = 0.5 - (r + .5) / 100
    res = K.bake_views(pos, faces, uv, [view], size, backend=backend, erode_px=3)
    y, x = np.mgrid[0:size, 0:size]
    wx, wy = -0.5 + (x + 0.5) / size, 0.5 - (y + 0.5) / size
    cheb = np.maximum(np.abs(wx), np.abs(wy))
    hidden_or_band = cheb < 0.2 + 0.03  # occluder half size 0.2, plus 3 pixels of band
    silhouette_band = cheb > 0.5 - 0.03
    assert not res.mask[hidden_or_band].any()
    assert not res.mask[silhouette_band].any()
    clear = (cheb > 0.2 + 0.06) & (cheb < 0.5 - 0.06)
    assert res.mask[clear].all()


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_view_mask_and_empty_inputs(backend: str) -> None:
    pos, faces, uv = cube(0.4, subdiv=1)
    img = np.ones((64, 64, 3), np.float32)
    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True  # only the left half of the image shows the object
    res = K.bake_views(pos, faces, uv, [K.BakeView(img, K.orthographic("front"), 1.0, mask)], 64, backend=backend)
    uvr = K.rasterize_uv(uv, faces, 64, 64)
    world = K.interpolate(uvr, faces, pos)
    assert res.mask.any()
    assert (world[res.mask][:, 0] < -0.04).all()  # 2 eroded pixels of 0.017 units left of x = 0
    empty = K.bake_views(pos, np.zeros((0, 3), int), uv, [K.BakeView(img, K.orthographic("front"))], 32, backend=backend)
    assert empty.texture.shape == (32, 32, 3) and not empty.mask.any()
    none = K.bake_views(pos, faces, uv, [], (16, 32), backend=backend)
    assert none.texture.shape == (16, 32, 3) and not none.mask.any()

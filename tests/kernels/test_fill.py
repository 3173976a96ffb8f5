"""Hole filling: charts fully painted, gutters filled, mip levels free of background, seams continuous."""

from __future__ import annotations

import numpy as np
import pytest

from inference_server import kernels as K
from inference_server.kernels.meshes import cube, uv_sphere


def mip_chain(tex: np.ndarray) -> list[np.ndarray]:
    levels = [tex]
    while min(levels[-1].shape[:2]) > 1:
        t = levels[-1]
        h, w = t.shape[0] // 2 * 2, t.shape[1] // 2 * 2
        levels.append(t[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).mean(axis=(1, 3)))
    return levels


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_constant_colour_fills_everything_including_every_mip_level(backend: str) -> None:
    pos, faces, uv = cube(0.4, subdiv=3)
    size = 96
    colour = np.array([0.2, 0.6, 0.9], np.float32)
    img = np.broadcast_to(colour, (128, 128, 3)).copy()
    baked = K.bake_views(pos, faces, uv, [K.BakeView(img, K.orthographic("front"), 1.0)], size, backend=backend)
    charts = K.rasterize_uv(uv, faces, size, size).face_id >= 0
    assert baked.mask.sum() < 0.3 * charts.sum()  # only the front side was seen
    out = K.fill_holes(baked.texture, baked.mask, positions=pos, uvs=uv, faces=faces, backend=backend)
    for level in mip_chain(out):  # no background (zero) colour leaks in at any level
        np.testing.assert_allclose(level, np.broadcast_to(colour, level.shape), atol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_charts_painted_from_mesh_and_gutters_from_nearest_chart(backend: str) -> None:
    pos, faces, uv = cube(0.4, subdiv=4, gutter=0.1)
    size = 120
    # Colour = position: the front view sees the +Z side only.
    r = K.rasterize(pos, faces, K.orthographic("front"), 128, 128)
    img = K.interpolate(r, faces, pos + 0.5)
    baked = K.bake_views(pos, faces, uv, [K.BakeView(img, K.orthographic("front"), 1.0)], size, backend=backend)
    out = K.fill_holes(baked.texture, baked.mask, positions=pos, uvs=uv, faces=faces, backend=backend, gutter_px=6)
    uvr = K.rasterize_uv(uv, faces, size, size)
    charts = uvr.face_id >= 0
    assert np.isfinite(out).all()
    # Covered texels keep their baked colour.
    np.testing.assert_array_equal(out[baked.mask], baked.texture[baked.mask])
    # Every chart texel holds a colour within the range the views saw (no black, nothing invented).
    seen = baked.texture[baked.mask]
    assert (out[charts] >= seen.min(0) - 1e-5).all() and (out[charts] <= seen.max(0) + 1e-5).all()
    # Side charts next to the front: their vertices on the shared cube edge take the front's colour.
    world = K.interpolate(uvr, faces, pos)
    near_front_edge = charts & ~baked.mask & (world[..., 2] > 0.39)
    assert near_front_edge.any()
    np.testing.assert_allclose(out[near_front_edge][:, :2], world[near_front_edge][:, :2] + 0.5, atol=0.15)
    # Gutter texels next to a chart repeat the chart's colour (bilinear and mip 1 read them).
    from scipy import ndimage

    ring = ndimage.binary_dilation(charts) & ~charts
    nearest = ndimage.distance_transform_edt(~charts, return_distances=False, return_indices=True)
    src = out[nearest[0][ring], nearest[1][ring]]
    assert np.abs(out[ring] - src).max() < 0.05


def test_cpu_matches_reference() -> None:
    pos, faces, uv = uv_sphere(24, 48, 0.45, uv_margin=0.05)
    rng = np.random.default_rng(3)
    tex = rng.random((80, 72, 3)).astype(np.float32)
    mask = rng.random((80, 72)) < 0.3
    for kwargs in ({}, {"positions": pos, "uvs": uv, "faces": faces}):
        a = K.fill_holes(tex, mask, backend="reference", **kwargs)
        b = K.fill_holes(tex, mask, backend="cpu", **kwargs)
        np.testing.assert_allclose(a, b, atol=1e-5)  # same rules; float sums in another order
    from inference_server.kernels.fill import cpu, reference

    known = mask.copy()
    ta, ka = reference.dilate(tex, known, 5)
    tb, kb = cpu.dilate(tex, known, 5)
    np.testing.assert_array_equal(ka, kb)
    np.testing.assert_array_equal(ta, tb)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_image_space_only(backend: str) -> None:
    tex = np.zeros((33, 47, 2), np.float32)
    mask = np.zeros((33, 47), bool)
    tex[10:14, 20:25] = [0.3, 0.7]
    mask[10:14, 20:25] = True
    out = K.fill_holes(tex, mask, backend=backend)
    np.testing.assert_allclose(out, np.broadcast_to([0.3, 0.7], out.shape), atol=1e-6)
    chart = np.zeros_like(mask)
    chart[:, :30] = True
    tex2 = tex.copy()
    tex2[0:3, 40:45] = 9.0  # "covered" but outside the charts: ignored
    mask2 = mask.copy()
    mask2[0:3, 40:45] = True
    out2 = K.fill_holes(tex2, mask2, chart_mask=chart, backend=backend)
    assert out2.max() < 1.0
    np.testing.assert_allclose(K.fill_holes(tex[..., 0], mask, backend=backend), out[..., 0], atol=1e-6)  # 2-D too


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_propagation_is_continuous_across_uv_seams(backend: str) -> None:
    """The lat-long sphere's seam runs down the front (u = 0 | u = 1). Bake only the left view:
    the seam is filled from the mesh, and the two sides of the seam must agree."""
    pos, faces, uv = uv_sphere(32, 64, 0.45)
    seam = np.arange(len(pos)).reshape(33, 65)[:, -1]
    pos[seam] += np.float32(1e-7)  # seam copies that differ in the last bits still weld
    back = K.orthographic("left")
    r = K.rasterize(pos, faces, back, 128, 128)
    img = K.interpolate(r, faces, np.clip(pos + 0.5, 0, 1))
    size = 128
    baked = K.bake_views(pos, faces, uv, [K.BakeView(img, back, 1.0)], size, backend=backend)
    out = K.fill_holes(baked.texture, baked.mask, positions=pos, uvs=uv, faces=faces, backend=backend)
    assert not baked.mask[:, 0].any()
    # Across the seam (column -1 to column 0, one texel apart on the surface) colour changes no
    # more than between neighbouring columns on either side; unwelded, it jumped by 0.45.
    rows = slice(2, -2)
    seam = np.abs(out[rows, 0] - out[rows, -1]).max()
    beside = max(np.abs(out[rows, 1] - out[rows, 0]).max(), np.abs(out[rows, -1] - out[rows, -2]).max())
    assert seam <= 1.5 * beside + 0.01, (seam, beside)


def test_reusing_the_bake_uv_raster_changes_nothing() -> None:
    pos, faces, uv = cube(0.4, subdiv=2)
    r = K.rasterize(pos, faces, K.orthographic("front"), 64, 64)
    img = K.interpolate(r, faces, pos + 0.5)
    baked = K.bake_views(pos, faces, uv, [K.BakeView(img, K.orthographic("front"), 1.0)], 48)
    assert baked.uv_raster is not None and baked.uv_raster.face_id.shape == (48, 48)
    a = K.fill_holes(baked.texture, baked.mask, positions=pos, uvs=uv, faces=faces)
    b = K.fill_holes(baked.texture, baked.mask, positions=pos, uvs=uv, faces=faces, uv_raster=baked.uv_raster)
    np.testing.assert_array_equal(a, b)

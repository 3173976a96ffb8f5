"""Cameras, geometry renders and the reference image, against upstream's conventions."""

from __future__ import annotations

import numpy as np
import trimesh

from inference_server.neural.texture.conditioning import (
    gltf_to_upstream,
    mv_views,
    prepare_reference,
    prepare_view_mesh,
    render_geometry,
)


def _pixel(view_proj: np.ndarray, point: tuple[float, float, float], size: int = 100) -> tuple[float, float]:
    clip = view_proj @ np.array([*point, 1.0])
    ndc = clip[:3] / clip[3]
    return (1 - ndc[1]) * 0.5 * size, (ndc[0] + 1) * 0.5 * size  # (row, column), row 0 at the top


def test_view_orientation_matches_upstream_cameras() -> None:
    views = {v.name: v for v in mv_views()}
    assert [v.name for v in mv_views()] == ["front", "right", "back", "left", "top", "bottom"]
    assert [v.weight for v in mv_views()] == [1.0, 0.1, 0.5, 0.1, 0.05, 0.05]
    centre = _pixel(views["front"].view_proj, (0, 0, 0))
    # Front: +X to the right, +Y up. Right view: the object's back (-Z) to the right.
    assert _pixel(views["front"].view_proj, (0.3, 0, 0))[1] > centre[1]
    assert _pixel(views["front"].view_proj, (0, 0.3, 0))[0] < centre[0]
    assert _pixel(views["right"].view_proj, (0, 0, -0.3))[1] > centre[1]
    # Back, top and bottom all run along -X (the mirrored front's column order).
    for name in ("back", "top", "bottom"):
        assert _pixel(views[name].view_proj, (-0.3, 0, 0))[1] > centre[1], name
    # Top view: the object's front (+Z) at the top of the image; bottom view: its back.
    assert _pixel(views["top"].view_proj, (0, 0, 0.3))[0] < centre[0]
    assert _pixel(views["bottom"].view_proj, (0, 0, -0.3))[0] < centre[0]
    # Ortho box +-0.55: a point at x = 0.55 lands on the right border of the front view.
    assert abs(_pixel(views["front"].view_proj, (0.55, 0, 0))[1] - 100) < 1e-9


def test_geometry_maps_hold_upstream_frame_positions_and_normals() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=2.0)
    mesh = prepare_view_mesh(sphere.vertices + 3.0, sphere.faces)  # off-centre and large: normalised
    assert abs(np.abs(mesh.positions).max() - 0.5) < 1e-6
    maps, masks = render_geometry(mesh, mv_views(), 64)
    assert maps.shape == (6, 6, 64, 64) and masks.shape == (6, 64, 64)
    # Front view centre: the point (0, 0, 0.5) with normal +Z, i.e. (0, -0.5, 0) and (0, -1, 0) upstream.
    centre = maps[0, :, 31:33, 31:33].mean(axis=(1, 2))
    np.testing.assert_allclose(centre[:3], [0.5, 0.0, 0.5], atol=0.02)
    np.testing.assert_allclose(centre[3:], [0.5, 0.0, 0.5], atol=0.02)
    # Top view centre: (0, 0.5, 0) glTF -> (0, 0, 0.5) upstream, normal +Z upstream.
    top = maps[4, :, 31:33, 31:33].mean(axis=(1, 2))
    np.testing.assert_allclose(top, [0.5, 0.5, 1.0, 0.5, 0.5, 1.0], atol=0.02)
    # Background is 0.5 in every channel; the sphere fills a disc of radius 0.5 / 0.55 of the half-width.
    assert np.all(maps[:, :, 0, 0] == 0.5)
    assert abs(masks[0].mean() - np.pi * (0.5 / 1.1) ** 2) < 0.02
    np.testing.assert_allclose(gltf_to_upstream(np.array([1.0, 2.0, 3.0])), [1.0, -3.0, 2.0])


def test_reference_is_cropped_scaled_and_centred_on_grey() -> None:
    image = np.zeros((200, 300, 4), np.uint8)
    image[50:150, 100:150] = (255, 0, 0, 255)  # 100 tall, 50 wide
    out = prepare_reference(image, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == (127, 127, 127)
    red = (out[..., 0] > 200) & (out[..., 1] < 60)
    rows, cols = np.nonzero(red)
    assert 54 <= rows.max() - rows.min() + 1 <= 58  # ~0.9 x 64 tall (plus the one-pixel margin)
    assert abs((rows.min() + rows.max()) / 2 - 31.5) <= 1.5 and abs((cols.min() + cols.max()) / 2 - 31.5) <= 1.5

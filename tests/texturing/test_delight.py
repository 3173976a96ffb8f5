"""Texture honesty: shading and highlights leave the base colour; the back gets no front features."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from inference_server.texturing.delight import back_stand_in, delight, is_symmetric
from inference_server.texturing.project import project_texture

from tests.texturing.test_project import N, rerender, sphere_mesh

BLUE = np.array([0.2, 0.35, 0.8], np.float32)


def lit_ball() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A blue ball lit from the camera (Lambert) with a white specular spot: rgb, mask, n.v."""
    y, x = np.mgrid[0:N, 0:N] + 0.5
    dx, dy = (x - N / 2) / (0.475 * N), (y - N / 2) / (0.475 * N)
    r2 = dx**2 + dy**2
    mask = r2 <= 1
    facing = np.where(mask, np.sqrt(np.clip(1 - r2, 0, 1)), np.nan).astype(np.float32)
    shade = 0.25 + 0.75 * np.nan_to_num(facing)
    rgb = BLUE * shade[..., None]
    spot = np.hypot(dx + 0.3, dy + 0.3) < 0.12
    rgb[spot] = 0.97
    return np.where(mask[..., None], rgb, 1.0).astype(np.float32), mask, facing


def test_shading_and_highlight_are_removed_from_the_base_colour() -> None:
    rgb, mask, facing = lit_ball()
    out = delight(rgb, mask, facing)
    inner = mask & (np.nan_to_num(facing) > 0.3)
    before = np.linalg.norm(rgb[inner] - rgb[inner].mean(0), axis=1).mean()
    after = np.linalg.norm(out[inner] - out[inner].mean(0), axis=1).mean()
    assert after < 0.4 * before  # the rim darkening is mostly gone
    y, x = np.mgrid[0:N, 0:N] + 0.5
    spot = np.hypot((x - N / 2) / (0.475 * N) + 0.3, (y - N / 2) / (0.475 * N) + 0.3) < 0.12
    # The white spot took the ball's own colour (hue kept: blue stays the strongest channel).
    assert np.all(out[spot][:, 2] > out[spot][:, 0] + 0.2)
    assert out[spot].max() < 0.9


def test_paint_uncorrelated_with_the_shape_is_left_alone() -> None:
    _, mask, facing = lit_ball()
    y, x = np.mgrid[0:N, 0:N] + 0.5
    stripes = np.where(((x // 24) % 2 == 0)[..., None], np.float32([0.8, 0.2, 0.2]), np.float32([0.2, 0.6, 0.3]))
    out = delight(stripes.astype(np.float32), mask, facing)
    assert np.abs(out - stripes).max() < 1e-6


def eyed_face(bump: bool) -> SimpleNamespace:
    """A blue disk with one black 'eye' left of centre; ``bump`` adds an ear on the right only."""
    y, x = np.mgrid[0:N, 0:N] + 0.5
    mask = np.hypot(x - N / 2, y - N / 2) <= 0.4 * N
    if bump:
        mask |= np.hypot(x - 0.8 * N, y - N / 2) <= 0.2 * N
    rgb = np.broadcast_to(BLUE, (N, N, 3)).copy()
    rgb[np.hypot(x - 0.38 * N, y - 0.42 * N) < 0.06 * N] = 0.02
    rgba = np.zeros((N, N, 4), np.uint8)
    rgba[..., :3] = np.rint(rgb * 255)
    rgba[..., 3] = mask * 255
    return SimpleNamespace(rgba=rgba, mask=mask)


def test_front_features_are_not_painted_on_the_back() -> None:
    mesh = sphere_mesh()
    face = eyed_face(bump=False)
    report: dict[str, str] = {}
    tex = project_texture(mesh, [face], texture_size=256, report=report)
    assert report["back"] == "mirrored front, blurred"
    col, covered = rerender(mesh, tex, face.mask[:, ::-1], "back")
    eye_on_back = col[int(0.42 * N), int(0.62 * N)]  # where the mirrored eye would land
    assert np.abs(eye_on_back - BLUE).max() < 0.2
    # Asked for, the sharp mirrored front does carry the eye to the back.
    sharp = project_texture(mesh, [face], texture_size=256, mirror_detail=True)
    col, _ = rerender(mesh, sharp, face.mask[:, ::-1], "back")
    assert col[int(0.42 * N), int(0.62 * N)].max() < 0.15


def test_an_asymmetric_silhouette_gets_dominant_colours_on_the_back() -> None:
    face = eyed_face(bump=True)
    assert not is_symmetric(face.mask) and is_symmetric(eyed_face(bump=False).mask)
    rgb = face.rgba[..., :3].astype(np.float32) / 255
    back, how = back_stand_in(rgb, face.mask, mirror_detail=False)
    assert how == "dominant colours"
    inside = face.mask[:, ::-1]
    assert np.abs(back[inside] - BLUE).max(axis=1).mean() < 0.05  # one low-frequency blue

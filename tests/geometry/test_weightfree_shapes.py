"""Weight-free geometry respects the silhouettes: round sections, joins, holes, thin parts, side views.

Synthetic silhouettes with known answers, at a reduced extraction grid (resolution=128-160) so each
case takes a few seconds; the sphere bound is stated against that grid.
"""

from __future__ import annotations

import numpy as np
import pytest

from blender_addon.protocol.settings import JobSettings
from inference_server.assets import MeshData
from inference_server.geometry.silhouette import signed_distance
from inference_server.geometry.weightfree import MAP_SIZE, build_geometry, face_budget
from inference_server.imaging.prepare import prepare_reference
from inference_server.meshing.topology import face_components, topology_report
from inference_server.pipeline.base import JobContext

N = 512


def cutout(inside: np.ndarray) -> np.ndarray:
    img = np.zeros((*inside.shape, 4), np.uint8)
    img[inside] = (180, 90, 60, 255)
    return img


def grid() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:N, 0:N] + 0.5
    return xx, yy


def build(*masks: np.ndarray, resolution: int = 128, max_faces: int = 40_000) -> MeshData:
    images = [prepare_reference(cutout(m)) for m in masks]
    return build_geometry(images, JobSettings(max_faces=max_faces), JobContext(), resolution=resolution)


def components(mesh: MeshData) -> int:
    return face_components(mesh.faces.astype(np.int64), mesh.vertex_count)[0]


def test_disk_gives_a_sphere_within_two_percent_of_its_radius() -> None:
    xx, yy = grid()
    mesh = build(np.hypot(xx - 256, yy - 256) <= 200, resolution=160)
    centre = 0.5 * (mesh.positions.max(0) + mesh.positions.min(0))
    r = np.linalg.norm(mesh.positions - centre, axis=1)
    radius = 0.95  # the silhouette's half width on the canvas
    assert np.abs(r / radius - 1.0).max() < 0.02
    extent = np.ptp(mesh.positions, axis=0)
    assert extent[2] == pytest.approx(extent[0], rel=0.02)  # as deep as wide: round, not a lens


def test_two_blobs_joined_by_a_bar_give_one_connected_mesh() -> None:
    xx, yy = grid()
    blobs = (np.hypot(xx - 130, yy - 256) <= 90) | (np.hypot(xx - 382, yy - 256) <= 90)
    bar = (np.abs(yy - 256) <= 8) & (xx > 130) & (xx < 382)
    mesh = build(blobs | bar)
    assert components(mesh) == 1
    # The bar is a tube of its own width (16 of 432 px -> 0.07), not a plate as deep as the blobs.
    v = mesh.positions
    middle = v[np.abs(v[:, 0]) < 0.1]
    assert np.ptp(middle[:, 2]) == pytest.approx(np.ptp(middle[:, 1]), rel=0.25)
    assert np.ptp(middle[:, 2]) < 0.15
    # Without the bar the two blobs stay two parts: joins come from the silhouette only.
    assert components(build(blobs)) == 2


def test_a_ring_gives_a_solid_of_genus_one() -> None:
    xx, yy = grid()
    r = np.hypot(xx - 256, yy - 256)
    mesh = build((r <= 220) & (r >= 140))
    report = topology_report(mesh.faces, mesh.vertex_count)
    assert report.closed_manifold and components(mesh) == 1
    edges = np.unique(np.sort(np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]],
                                              mesh.faces[:, [2, 0]]]), axis=1), axis=0)
    euler = mesh.vertex_count - len(edges) + mesh.face_count
    assert euler == 0  # V - E + F = 2 - 2g: one hole through the middle
    # The hole stays open: nothing near the centre line.
    assert np.linalg.norm(mesh.positions[:, :2], axis=1).min() > 0.5


def test_a_thin_leg_is_kept_and_stays_attached() -> None:
    xx, yy = grid()
    body = np.hypot(xx - 256, yy - 180) <= 120
    leg = (np.abs(xx - 300) <= 4) & (yy > 180) & (yy < 480)  # 8 px wide, 300 px long
    mesh = build(body | leg)
    assert components(mesh) == 1
    v = mesh.positions
    foot = v[v[:, 1] < v[:, 1].min() + 0.05]
    assert len(foot) > 0 and np.abs(foot[:, 0] - foot[:, 0].mean()).max() < 0.05  # the leg's end
    # The leg is a thin tube all the way (8 px of 420 -> 0.036 wide), round: as deep as wide.
    shin = v[(v[:, 1] < -0.4) & (v[:, 1] > -0.7)]
    assert 0.02 < np.ptp(shin[:, 0]) < 0.06 and 0.02 < np.ptp(shin[:, 2]) < 0.06


def chair_views() -> tuple[np.ndarray, np.ndarray]:
    """A chair seen from the front (back rest, seat, two legs) and from the right (an L on two legs)."""
    xx, yy = grid()
    front = ((xx > 136) & (xx < 376) & (yy > 40) & (yy < 270))  # back rest above the seat
    front |= (xx > 136) & (xx < 376) & (yy >= 270) & (yy < 290)  # seat edge
    front |= ((np.abs(xx - 146) <= 10) | (np.abs(xx - 366) <= 10)) & (yy >= 290) & (yy < 480)  # legs
    # Right view: image x runs towards -Z, so the back of the chair is on the image's right.
    side = (xx > 356) & (xx < 376) & (yy > 40) & (yy < 290)  # back rest, at the back
    side |= (xx > 136) & (xx < 376) & (yy >= 270) & (yy < 290)  # seat
    side |= ((np.abs(xx - 146) <= 10) | (np.abs(xx - 366) <= 10)) & (yy >= 290) & (yy < 480)
    return front, side


def test_front_and_side_views_keep_all_four_chair_legs() -> None:
    front, side = chair_views()
    mesh = build(front, side, resolution=160)
    assert components(mesh) == 1
    v = mesh.positions
    legs = v[(v[:, 1] < -0.3) & (v[:, 1] > -0.8)]
    # Four separate posts (centred at |x| = |z| = 0.475, 0.09 thick): one per (x, z) quadrant.
    for sx in (-1, 1):
        for sz in (-1, 1):
            quadrant = legs[(np.sign(legs[:, 0]) == sx) & (np.sign(legs[:, 2]) == sz)]
            assert len(quadrant) > 20
            assert np.abs(quadrant[:, 0]).min() > 0.4 and np.abs(quadrant[:, 2]).min() > 0.4
    # The back rest stands at the back (-Z), as thin as the side view shows it, not inflated.
    rest = v[v[:, 1] > 0.3]
    assert rest[:, 2].max() < -0.38 and np.ptp(rest[:, 2]) < 0.12


def test_face_budget_follows_the_silhouettes_complexity() -> None:
    xx, yy = grid()
    disk = prepare_reference(cutout(np.hypot(xx - 256, yy - 256) <= 200))
    front, side = (prepare_reference(cutout(m)) for m in chair_views())

    def budget(*images: object) -> int:
        return face_budget([signed_distance(im.mask, MAP_SIZE) for im in images])  # type: ignore[attr-defined]

    assert budget(disk) == 20_000  # a round blob: tens of thousands, not 200k
    assert 40_000 < budget(front) < budget(front, side) <= 200_000  # legs and an L-shaped profile
    # At the default cap (200k) an apple-like disk comes out at its own budget...
    mesh = build_geometry([disk], JobSettings(), JobContext(), resolution=192)
    assert 10_000 < mesh.face_count <= 20_000
    # ...and a budget the artist sets lower still wins.
    assert build_geometry([disk], JobSettings(max_faces=5_000), JobContext(), resolution=128).face_count <= 5_000

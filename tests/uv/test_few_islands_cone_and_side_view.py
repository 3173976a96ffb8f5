"""Weight-free solids that used to be cut into many UV islands now get few.

Why they were many (measured before the fix): a cone's side regions stretch too much under LSCM
near the apex, and the projection fallback left hundreds of grazing faces in ~80 strips that xatlas
cut into ~80 islands; with a side view, pieces turned away from their region's axis joined it
through chains of merges and went to xatlas as folds, and small pieces at region borders stayed
islands of their own (a mug: 99 islands).
Now a stretched region is cut in two and flattened again, merge chains are checked against the
chain's end, and small charts and left-over pieces join the large neighbour they share most edges
with when that chart still flattens without folds. Meshes come from the real weight-free geometry
stage on synthetic masks (a triangle for the cone; ellipses, and a body with a ring handle, front + side).
"""

from __future__ import annotations

import numpy as np
import pytest

from blender_addon.protocol.settings import JobSettings
from inference_server.assets import MeshData
from inference_server.geometry.weightfree import build_geometry
from inference_server.imaging.prepare import prepare_reference
from inference_server.pipeline.base import JobContext
from inference_server.texturing.project import project_texture
from inference_server.uv import unwrap_with_info
from inference_server.uv.quality import chart_labels, chart_raster, measure_atlas

N = 512
COLOUR = (180, 90, 60)


def cutout(mask: np.ndarray) -> np.ndarray:
    image = np.zeros((*mask.shape, 4), np.uint8)
    image[mask] = (*COLOUR, 255)
    return image


def cone_mask() -> np.ndarray:
    yy, xx = np.mgrid[0:N, 0:N] + 0.5
    return (yy >= 80) & (yy <= 440) & (np.abs(xx - 256) <= (yy - 80) / 360 * 180)


def ellipse_mask(rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[0:N, 0:N] + 0.5
    return ((xx - 256) / rx) ** 2 + ((yy - 256) / ry) ** 2 <= 1.0


def mug_masks() -> list[np.ndarray]:
    """A mug: a body with a ring handle on its right (front), the body alone from the side."""
    yy, xx = np.mgrid[0:N, 0:N] + 0.5
    body = (np.abs(xx - 236) <= 110) & (np.abs(yy - 256) <= 130)
    ring = np.abs(np.hypot(xx - 346, yy - 256) - 70) <= 14
    return [body | ring, (np.abs(xx - 256) <= 110) & (np.abs(yy - 256) <= 130)]


def mesh_of(masks: list[np.ndarray]) -> MeshData:
    images = [prepare_reference(cutout(m)) for m in masks]
    return build_geometry(images, JobSettings(), JobContext(), resolution=256)  # type: ignore[arg-type]


CASES = {
    # Islands measured before -> after the fix: cone 117 -> 17, mug 99 -> 47 (ball 6 -> 6, the case
    # that already worked, kept so it stays so). Bounds leave room for marching-cubes and
    # decimation noise and fail well before the old counts; the cone keeps its apex region cut into
    # conformal pieces (a cone does not unroll into one chart of bounded area stretch), the mug's
    # handle several pieces (a ring's band does not flatten without stretch either).
    "cone, front only": (lambda: [cone_mask()], 30),
    "ball, front + side": (lambda: [ellipse_mask(200, 180), ellipse_mask(150, 180)], 8),
    "mug, front + side": (mug_masks, 55),
}


@pytest.mark.parametrize("name", list(CASES))
def test_few_islands_clean_atlas_and_every_used_texel_painted(name: str) -> None:
    masks, bound = CASES[name]
    front = masks()
    result = unwrap_with_info(mesh_of(front), texture_size=512)
    q = measure_atlas(result.mesh, 512)
    assert q.charts <= bound  # islands as the atlas measures them (connected in UV)
    assert q.uv_in_range and q.overlap_texels == 0 and q.flipped_faces == 0
    assert q.density_spread < 1.01  # every island at one texel density (a projected chart's pieces too)
    # The apple-like blob's bounds (tests/uv/test_view_charts.py), angles a little looser (measured p95 <= 1.08).
    assert q.angle_distortion_p95 < 1.2 and q.area_distortion_p95 < 1.4
    texture = project_texture(result.mesh, [prepare_reference(cutout(front[0]))], texture_size=512)
    face_id, _, _ = chart_raster(result.mesh.uvs, result.mesh.faces, chart_labels(result.mesh), 512)
    used = face_id >= 0
    assert used.mean() > 0.4
    error = np.abs(texture[used].astype(int) - list(COLOUR)).max(axis=1)
    assert (error <= 16).mean() > 0.99

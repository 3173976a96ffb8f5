"""Front view only: a thin horizontal strip that something stands on or hangs from is a plate seen
edge-on (a table's top, a lamp's base) and gets the depth of a disc as wide as it; the same strip
with nothing attached (a rod) stays a tube of its own thickness."""

from __future__ import annotations

import numpy as np

from blender_addon.protocol.settings import JobSettings
from inference_server.geometry.weightfree import build_geometry
from inference_server.imaging.prepare import prepare_reference
from inference_server.pipeline.base import JobContext

N = 512


def cutout(inside: np.ndarray) -> np.ndarray:
    image = np.zeros((*inside.shape, 4), np.uint8)
    image[inside] = (150, 100, 60, 255)
    return image


def depth_at(mask: np.ndarray, band: float) -> tuple[float, float]:
    """(depth, width) of the solid's top ``band`` (canvas units) of height."""
    mesh = build_geometry([prepare_reference(cutout(mask))], JobSettings(max_faces=40_000), JobContext(),
                          resolution=128)
    v = mesh.positions
    top = v[v[:, 1] >= v[:, 1].max() - band]
    return float(np.ptp(top[:, 2])), float(np.ptp(top[:, 0]))


def test_a_table_top_is_a_plate_and_a_lone_rod_a_tube() -> None:
    yy, xx = np.mgrid[0:N, 0:N]
    top = (yy >= 150) & (yy < 166) & (xx >= 56) & (xx < 456)  # 400 x 16 px strip
    legs = ((xx >= 80) & (xx < 96) | (xx >= 416) & (xx < 432)) & (yy >= 166) & (yy < 360)
    table_depth, table_width = depth_at(top | legs, 0.03)
    # As deep as wide (a disc seen edge-on), within the mesh's resolution.
    assert table_depth > 0.85 * table_width
    rod_depth, rod_width = depth_at(top, 0.03)
    # A tube of its own thickness: 16 px of a 400 px strip -> 4 % of its width.
    assert rod_depth < 0.08 * rod_width

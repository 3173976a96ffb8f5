"""The packer always finds a layout (issue 18: 12 charts "did not fit" one 512^2 texture).

The scale search aimed each try at the fill of the previous packing; for equal squares that aim
approached the largest fitting scale from above forever (height 510.0000001 texels in a 510 room),
so after 48 tries the job failed with ``bad_mesh``. Now, while nothing fits, every try shrinks.
"""

from __future__ import annotations

import numpy as np
import pytest

from inference_server.assets import MeshData
from inference_server.uv.pack import Packing, pack_charts
from inference_server.uv.quality import measure_atlas


def squares(n: int, side: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` separate unit squares (two triangles each, one chart each), laid out apart in 3-D."""
    uv, pos, faces, chart = [], [], [], []
    for c in range(n):
        base = len(pos)
        for x, y in ((0, 0), (side, 0), (side, side), (0, side)):
            uv.append((x, y))
            pos.append((x + 3.0 * c, y, 0.0))
        faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
        chart += [c, c]
    return np.array(uv, float), np.array(pos, np.float32), np.array(faces, np.int64), np.array(chart, np.int64)


def packed_mesh(n: int, texture_size: int, gap: int) -> tuple[Packing, MeshData]:
    uv, pos, faces, chart = squares(n)
    packing = pack_charts(uv, pos, faces, chart, n, texture_size=texture_size, gap_px=gap)
    mesh = MeshData(positions=pos, faces=faces.astype(np.uint32), uvs=packing.uvs.astype(np.float32))
    return packing, mesh


def test_twelve_equal_charts_fit_a_512_texture_at_full_density() -> None:
    packing, mesh = packed_mesh(12, 512, 2)
    quality = measure_atlas(mesh, 512)
    assert quality.min_gap_px >= 2
    # Four squares side by side fill the 510-texel room: 510 / 4 minus the gap is about 125 texels
    # per unit; the layout must not have bought its success by shrinking far below that.
    assert packing.texels_per_unit >= 120.0
    assert (packing.uvs >= 0).all() and (packing.uvs <= 1).all()


@pytest.mark.parametrize("texture_size", [512, 1024])
def test_small_numbers_of_equal_charts_fit(texture_size: int) -> None:
    for n in (1, 2, 3, 5, 8, 13, 21, 32):
        packing, mesh = packed_mesh(n, texture_size, 2 if texture_size == 512 else 4)
        gap = packing.gap_px
        assert measure_atlas(mesh, texture_size).min_gap_px >= gap, n
        # At least the density of a square grid of n cells (each cell holds one chart and its gap).
        cells = int(np.ceil(np.sqrt(n)))
        grid = (texture_size - gap) / cells - gap
        assert packing.texels_per_unit >= 0.95 * grid, (n, packing.texels_per_unit, grid)

"""Back-projection: bake N camera images into one UV texture (:func:`bake_views`).

For every texel the surface point and normal behind it come from a UV-space raster; each view
then contributes ``view.weight * cos(theta)**cos_power`` of its bilinear colour at the point's
projection, where theta is the angle between the normal and the direction to the camera, if:
the point is visible in that view (its depth matches the view's z-buffer within
``depth_tolerance`` plus what the surface's slope spans over a pixel), theta is at most ``max_angle_deg``, and its pixel is not within ``erode_px``
of a silhouette, of a depth edge (a jump over ``depth_edge`` between neighbouring pixels) or of
the view mask's edge: those pixels blend object and background colour. These are the Step1X-3D
baker's rules (cos^4, 75 degrees, per-view weights [1, 0.1, 0.5, 0.1, 0.05, 0.05]).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import as_torch, first_torch, like, resolve, to_numpy
from ..raster import Raster
from ._prep import BakeView, texel_samples, view_maps

__all__ = ["BakeResult", "BakeView", "bake_views"]


@dataclass
class BakeResult:
    """texture: (H, W, C) float32 weighted mean colour (0 where uncovered); mask: (H, W) bool
    covered texels; weight: (H, W) float32 sum of the weights; uv_raster: the atlas's
    :class:`~kernels.raster.Raster` (pass it to ``fill_holes`` to skip rasterizing it again;
    None when nothing was baked)."""

    texture: Any
    mask: Any
    weight: Any
    uv_raster: Any = None


def _size(texture_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(texture_size, (tuple, list)):
        return int(texture_size[0]), int(texture_size[1])
    return int(texture_size), int(texture_size)


def _channels(image: Any) -> int:
    shape = tuple(image.shape)
    return 1 if len(shape) == 2 else int(shape[2])


def bake_views(
    positions: Any,
    faces: Any,
    uvs: Any,
    views: Sequence[BakeView],
    texture_size: int | tuple[int, int],
    *,
    normals: Any = None,
    cos_power: float = 4.0,
    max_angle_deg: float = 75.0,
    erode_px: int = 2,
    depth_edge: float | None = None,
    depth_tolerance: float | None = None,
    backend: str = "auto",
    on_view: Callable[[int, int], None] | None = None,
) -> BakeResult:
    """Bake ``views`` into a (H, W) = ``texture_size`` texture over the mesh's UV atlas.

    positions (V, 3), faces (F, 3), uvs (V, 2) glTF convention; normals (V, 3) optional (default:
    the faces' geometric normals, CCW = front). ``depth_edge`` and ``depth_tolerance`` are world
    units, by default 2% and 0.5% of the bounding box diagonal. ``on_view(i, n)`` is called before
    each view (progress and cancellation). Torch CUDA inputs run the Triton path.
    """
    height, width = _size(texture_size)
    impl = resolve(backend, positions, faces, uvs)
    if impl == "triton":
        from . import triton as tr

        pos_t = as_torch(positions)
        return tr.bake_views(
            pos_t, as_torch(faces, pos_t.device), as_torch(uvs, pos_t.device), views, (height, width),
            normals=normals, cos_power=cos_power, max_angle_deg=max_angle_deg, erode_px=erode_px,
            depth_edge=depth_edge, depth_tolerance=depth_tolerance, on_view=on_view,
        )
    template = first_torch(positions, faces, uvs)
    pos = to_numpy(positions, np.float32).reshape(-1, 3)
    tri = to_numpy(faces).reshape(-1, 3).astype(np.int64, copy=False)
    uv = to_numpy(uvs, np.float32).reshape(-1, 2)
    nrm = None if normals is None else to_numpy(normals, np.float32).reshape(-1, 3)
    nch = max((_channels(v.image) for v in views), default=3)
    diag = float(np.linalg.norm(pos.max(0) - pos.min(0))) if len(pos) else 1.0
    depth_edge = 0.02 * diag if depth_edge is None else float(depth_edge)
    depth_tolerance = 0.005 * diag if depth_tolerance is None else float(depth_tolerance)
    cos_min = math.cos(math.radians(max_angle_deg))

    texture = np.zeros((height, width, nch), np.float32)
    weight_map = np.zeros((height, width), np.float32)
    if len(tri) == 0 or len(views) == 0:
        return BakeResult(like(texture, template), like(weight_map > 0, template), like(weight_map, template))
    max_slope = math.tan(math.radians(min(max_angle_deg, 89.0)))
    from . import cpu, reference

    if impl == "reference":
        samples = texel_samples(pos, tri, uv, nrm, width, height, "reference")
        make_maps, accumulate = view_maps, reference.accumulate
    else:
        samples = cpu.texel_samples(pos, tri, uv, nrm, width, height)
        make_maps, accumulate = cpu.view_maps, cpu.accumulate
    acc = np.zeros((samples.index.size, nch), np.float64 if impl == "reference" else np.float32)
    wsum: np.ndarray = np.zeros(samples.index.size, acc.dtype)
    for i, view in enumerate(views):
        if on_view is not None:
            on_view(i, len(views))
        as_numpy = BakeView(to_numpy(view.image), to_numpy(view.view_proj), view.weight,
                            None if view.mask is None else to_numpy(view.mask))
        vm = make_maps(pos, tri, as_numpy, erode_px, depth_edge, max_slope)
        if vm.image.shape[2] != nch:
            raise ValueError(f"all views need {nch} channels, view {i} has {vm.image.shape[2]}")
        accumulate(samples, vm, acc, wsum, cos_min, cos_power, depth_tolerance)
    if impl == "reference":
        hit = wsum > 0
        texture.reshape(-1, nch)[samples.index[hit]] = (acc[hit] / wsum[hit, None]).astype(np.float32)
        weight_map.reshape(-1)[samples.index] = wsum
    else:
        cpu.resolve(samples.index, acc, wsum, texture.reshape(-1, nch), weight_map.reshape(-1))
    uvr = samples.uv_raster
    return BakeResult(like(texture, template), like(weight_map > 0, template), like(weight_map, template),
                      Raster(like(uvr.face_id, template), like(uvr.bary, template), like(uvr.depth, template)))

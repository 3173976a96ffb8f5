"""Rasterization: screen space (:func:`rasterize`), UV space (:func:`rasterize_uv`) and
attribute interpolation (:func:`interpolate`).

Each function picks its implementation from its inputs (see ``kernels._backend``):
``reference`` (numpy, the test oracle), ``cpu`` (numba) or ``triton`` (torch tensors).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import as_torch, first_torch, like, resolve, to_numpy
from ._setup import Raster, check_faces, empty_raster, uv_to_clip_positions

__all__ = ["Raster", "interpolate", "rasterize", "rasterize_uv"]


def rasterize(
    positions: Any, faces: Any, view_proj: Any, width: int, height: int, *, backend: str = "auto"
) -> Raster:
    """Z-buffered visibility of a triangle mesh in one view.

    positions: (V, 3) float, world space. faces: (F, 3) int, any winding (no culling).
    view_proj: (4, 4), see ``kernels.cameras``. Returns a :class:`Raster` of (height, width)
    arrays (face_id int32, bary float32 x3, depth float32). numpy in -> numpy out; torch
    tensors in -> tensors out on the same device (CUDA tensors run the Triton kernel).
    """
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ValueError(f"raster size must be positive, got {width}x{height}")
    impl = resolve(backend, positions, faces)
    if impl == "triton":
        from . import triton as tr

        pos_t = as_torch(positions)
        return tr.rasterize(pos_t, as_torch(faces, pos_t.device), to_numpy(view_proj, np.float64), width, height)
    template = first_torch(positions, faces)
    pos = to_numpy(positions, np.float64).reshape(-1, 3)
    tri = check_faces(to_numpy(faces), len(pos))
    vp = to_numpy(view_proj, np.float64)
    if len(tri) == 0:
        out = empty_raster(width, height)
    elif impl == "reference":
        from . import reference

        out = reference.rasterize(pos, tri, vp, width, height)
    else:
        from . import cpu

        out = cpu.rasterize(pos, tri, vp, width, height)
    return Raster(like(out.face_id, template), like(out.bary, template), like(out.depth, template))


def rasterize_uv(uvs: Any, faces: Any, width: int, height: int, *, backend: str = "auto") -> Raster:
    """Which face covers each texel centre of a (height, width) atlas, and where in it.

    uvs: (V, 2) glTF UVs (origin top-left, texel row = v * height, column = u * width).
    Where charts overlap the lower face id wins. ``depth`` is 0.5 on covered texels.
    """
    if first_torch(uvs) is not None:
        import torch

        uv = uvs.to(torch.float64)
        pos = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2, torch.zeros_like(uv[:, 0])], dim=1)
        eye = torch.eye(4, dtype=torch.float64, device=uvs.device)
        return rasterize(pos, faces, eye, width, height, backend=backend)
    return rasterize(uv_to_clip_positions(to_numpy(uvs)), faces, np.eye(4), width, height, backend=backend)


def interpolate(raster: Raster, faces: Any, attributes: Any, *, backend: str = "auto") -> Any:
    """(H, W, C) float32: per-vertex ``attributes`` (V, C) blended with the raster's barycentrics.

    Zero where the raster is empty. A 1-D attribute (V,) is treated as (V, 1).
    """
    impl = resolve(backend, raster.face_id, attributes)
    if impl == "triton":
        from . import triton as tr

        fid = as_torch(raster.face_id)
        on_device = Raster(fid, as_torch(raster.bary, fid.device), as_torch(raster.depth, fid.device))
        return tr.interpolate(on_device, faces, attributes)
    template = first_torch(raster.face_id, attributes)
    attr = to_numpy(attributes, np.float32)
    attr = attr.reshape(len(attr), -1)
    fid, bary = to_numpy(raster.face_id), to_numpy(raster.bary, np.float32)
    tri = to_numpy(faces).reshape(-1, 3).astype(np.int64, copy=False)
    if impl == "reference":
        from . import reference as impl_mod
    else:
        from . import cpu as impl_mod  # type: ignore[no-redef]
    return like(impl_mod.interpolate(fid, bary, tri, attr), template)

"""Rasterization, back-projection and texture filling on CPU (numba) and GPU (Triton).

Every public kernel picks its implementation from its inputs: numpy arrays run the CPU path,
torch CUDA tensors the Triton path; ``backend="reference"`` runs the plain numpy oracle and
``backend="triton"`` forces Triton (on CPU tensors only under ``TRITON_INTERPRET=1``).
torch and triton are imported only when a tensor or ``backend="triton"`` asks for them.

Families (one sub-package each, with ``reference``, ``cpu`` and ``triton`` modules):
- ``kernels.raster``: :func:`rasterize`, :func:`rasterize_uv`, :func:`interpolate`
- ``kernels.bake``: :func:`bake_views`
- ``kernels.fill``: :func:`fill_holes`
- ``kernels.cameras``: :func:`orthographic`, :func:`perspective`, :func:`upstream_views`
- ``kernels.meshes``: synthetic meshes with UVs (UV sphere, cube) for tests and benchmarks

Typical texture bake: ``r = bake_views(pos, faces, uvs, [BakeView(image, view_proj, weight,
mask), ...], 2048)`` then ``fill_holes(r.texture, r.mask, positions=pos, uvs=uvs, faces=faces,
uv_raster=r.uv_raster)``.
"""

from .bake import BakeResult, BakeView, bake_views
from .cameras import View, camera_info, look_at, orthographic, perspective, upstream_views
from .fill import fill_holes
from .raster import Raster, interpolate, rasterize, rasterize_uv

__all__ = [
    "BakeResult",
    "BakeView",
    "Raster",
    "View",
    "bake_views",
    "camera_info",
    "fill_holes",
    "interpolate",
    "look_at",
    "orthographic",
    "perspective",
    "rasterize",
    "rasterize_uv",
    "upstream_views",
]

"""Hole filling for baked textures (:func:`fill_holes`).

1. Mesh (when given): texels the views did not cover get colours propagated over the mesh from
   seen vertices (``_mesh``), interpolated inside their triangles, so unseen regions continue
   the surrounding colours across charts and seams.
2. Image space: ``gutter_px`` rounds of dilation give the texels around each chart the colour
   of their nearest chart texels (what bilinear filtering and the first mip levels read), then
   push-pull fills everything left, so mip-mapping never averages in a background colour.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import as_torch, first_torch, like, resolve, to_numpy
from . import _mesh
from ._pushpull import push_pull

__all__ = ["fill_holes"]


def fill_holes(
    texture: Any,
    mask: Any,
    *,
    mesh: Any = None,
    positions: Any = None,
    uvs: Any = None,
    faces: Any = None,
    chart_mask: Any = None,
    uv_raster: Any = None,
    gutter_px: int = 8,
    smooth_iterations: int = 100,
    backend: str = "auto",
) -> Any:
    """(H, W, C) float32 texture with every texel defined.

    texture: (H, W, C) float; mask: (H, W) bool, texels holding valid colour.
    mesh: an object with ``positions`` (V, 3), ``faces`` (F, 3), ``uvs`` (V, 2) (e.g. ``MeshData``),
    or pass ``positions``/``uvs``/``faces`` directly; without them only the image-space fill runs.
    chart_mask: (H, W) bool texels inside UV charts (computed from the mesh when it is given);
    colour outside charts is ignored and replaced by the fill.
    uv_raster: the mesh's UV :class:`~kernels.raster.Raster` at this size, if already made
    (``BakeResult.uv_raster``), to skip rasterizing it again.
    gutter_px: rounds of nearest-texel dilation around the charts before push-pull fills the rest.
    smooth_iterations: conjugate-gradient steps blending the propagated vertex colours towards the
    harmonic fill (0 keeps each unseen vertex at its nearest seen vertex's colour).
    """
    impl = resolve(backend, texture, mask)
    if impl == "triton":
        from . import triton as tr

        tex_t = as_torch(texture)
        return tr.fill_holes(tex_t, as_torch(mask, tex_t.device), mesh=mesh, positions=positions, uvs=uvs, faces=faces,
                             chart_mask=chart_mask, uv_raster=uv_raster, gutter_px=gutter_px,
                             smooth_iterations=smooth_iterations)
    template = first_torch(texture, mask)
    tex = to_numpy(texture, np.float32)
    squeeze = tex.ndim == 2
    tex = (tex[:, :, None] if squeeze else tex).copy()
    known = to_numpy(mask).astype(bool).copy()
    tex, known = fill_numpy(tex, known, mesh=mesh, positions=positions, uvs=uvs, faces=faces, chart_mask=chart_mask,
                            uv_raster=uv_raster, gutter_px=gutter_px, smooth_iterations=smooth_iterations,
                            impl=impl)
    if impl == "reference":
        out = push_pull(tex, known)
    else:
        from .cpu import push_pull as push_pull_cpu

        out = push_pull_cpu(tex, known)
    return like(out[:, :, 0] if squeeze else out, template)


def fill_numpy(
    tex: np.ndarray, known: np.ndarray, *, mesh: Any, positions: Any, uvs: Any, faces: Any, chart_mask: Any,
    uv_raster: Any, gutter_px: int, smooth_iterations: int, impl: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1 and the dilation of step 2 on numpy arrays (shared by the CPU and reference paths)."""
    if mesh is not None:
        positions, uvs, faces = mesh.positions, mesh.uvs, mesh.faces
    h, w = known.shape
    if positions is not None and uvs is not None and faces is not None and len(faces):
        from ..raster import Raster, rasterize_uv

        pos = to_numpy(positions, np.float32).reshape(-1, 3)
        tri = to_numpy(faces).reshape(-1, 3).astype(np.int64)
        if uv_raster is not None and tuple(uv_raster.face_id.shape) == (h, w):
            uvr = Raster(to_numpy(uv_raster.face_id), to_numpy(uv_raster.bary, np.float32), to_numpy(uv_raster.depth))
        else:
            uvr = rasterize_uv(to_numpy(uvs, np.float32), tri, w, h, backend=impl)
        charts = uvr.face_id >= 0 if chart_mask is None else to_numpy(chart_mask).astype(bool)
        known &= charts
        if impl == "reference":
            colours, seen = _mesh.vertex_colours(tex, known, uvr.face_id, uvr.bary, tri, len(pos))
        else:
            from .cpu import vertex_colours

            colours, seen = vertex_colours(tex, known, uvr.face_id, uvr.bary, tri, len(pos))
        colours, defined = _mesh.propagate(pos, tri, colours, seen, smooth_iterations)
        known = _mesh.paint_charts(tex, known, uvr.face_id, uvr.bary, tri, colours, defined)
    elif chart_mask is not None:
        known &= to_numpy(chart_mask).astype(bool)
    if gutter_px > 0 and known.any():
        if impl == "reference":
            from .reference import dilate
        else:
            from .cpu import dilate  # type: ignore[assignment]
        tex, known = dilate(tex, known, gutter_px)
    return tex, known

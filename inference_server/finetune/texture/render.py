"""The six training views of a textured asset, exactly as the texture model sees its meshes.

The mesh is framed by ``conditioning.prepare_view_mesh`` (centred, max |v| = 0.5) and drawn by
our rasterizer (``kernels``) from ``conditioning.mv_views()``, the six orthographic cameras of
the stage; the position and normal maps come from ``conditioning.render_geometry`` itself, so
frame, offsets and background are those of inference. Colour views are the unlit base colour
(what the baker writes back into the texture) on 50% grey, upstream's ``background_color: gray``.
"""

from __future__ import annotations

import numpy as np

from inference_server import kernels

from ...neural.texture.conditioning import mv_views, prepare_view_mesh, render_geometry
from .assets import TexturedAsset, sample_texture

GREY = 0.5  # upstream's training views and reference: gray background


def render_colour(asset: TexturedAsset, positions: np.ndarray, view_proj: np.ndarray, resolution: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) float32 base colour in [0, 1] on grey and the (H, W) coverage mask of one view."""
    raster = kernels.rasterize(positions, asset.faces, view_proj, resolution, resolution)
    face_id = np.asarray(raster.face_id)
    hit = face_id >= 0
    attrs = np.concatenate([asset.uvs, asset.colors], axis=1).astype(np.float32)
    values = np.asarray(kernels.interpolate(raster, asset.faces, attrs))
    rgb = np.full((resolution, resolution, 3), GREY, np.float32)
    for part in asset.parts:
        sel = hit & (face_id >= part.start) & (face_id < part.stop)
        if not sel.any():
            continue
        colour = values[sel][:, 2:5] * part.factor
        if part.texture is not None:
            colour = colour * sample_texture(part.texture, values[sel][:, :2])
        rgb[sel] = np.clip(colour, 0.0, 1.0)
    return rgb, hit


def render_training_views(asset: TexturedAsset, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(views (6, H, W, 3) float32 in [0, 1], control (6, 6, H, W) float32, masks (6, H, W) bool)."""
    mesh = prepare_view_mesh(asset.positions, asset.faces)
    views = mv_views()
    control, masks = render_geometry(mesh, views, resolution)
    colours = np.stack([render_colour(asset, mesh.positions, v.view_proj, resolution)[0] for v in views])
    return colours, control, masks


def front_rgba(colour: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The front view as an RGBA cut-out (alpha = coverage): the reference when no concept image is paired."""
    out = np.zeros(colour.shape[:2] + (4,), np.uint8)
    out[..., :3] = np.round(colour * 255).astype(np.uint8)
    out[..., 3] = mask.astype(np.uint8) * 255
    return out

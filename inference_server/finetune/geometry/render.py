"""Condition renders of a training object with our own rasterizer (``kernels.raster``).

Upstream trains on renders of each object from many views (20 per object), composited on white
and scaled to a foreground ratio of 0.90 of the square canvas (its data loader's default) before
the image encoder sees them. We render ``views`` perspective views around the object (azimuths
evenly spaced from the front, seeded jitter, elevations between -10 and 35 degrees), shaded
with a headlight over the vertex colours or a neutral grey, with the coverage as alpha; the
geometry pipeline's own ``condition_image`` then crops, scales and composites them exactly as
it does for a user's reference image.
"""

from __future__ import annotations

import numpy as np

from inference_server.kernels.cameras import perspective
from inference_server.kernels.raster import interpolate, rasterize

GREY = 0.72
AMBIENT = 0.35
FOV_DEG = 35.0
DISTANCE = 4.0  # the object spans [-1, 1]: well inside the view at this distance and field of view


def view_directions(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 3) unit directions from the object towards each camera; view 0 is near the front (+Z)."""
    azimuth = np.radians(np.arange(count) * 360.0 / count + rng.uniform(-10.0, 10.0, count))
    elevation = np.radians(rng.uniform(-10.0, 35.0, count))
    return np.stack([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)], axis=1)


def render_view(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, colors: np.ndarray | None,
                direction: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 4) uint8 RGBA: shaded object, alpha = coverage, transparent background."""
    view_proj = perspective(direction, FOV_DEG, distance=DISTANCE)
    raster = rasterize(vertices, faces, view_proj, size, size)
    mask = np.asarray(raster.face_id) >= 0
    attrs = np.concatenate([normals, colors if colors is not None else np.full((len(vertices), 3), GREY)], axis=1)
    interp = np.asarray(interpolate(raster, faces, attrs.astype(np.float32)))
    n = interp[..., :3]
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-8)
    # Headlight slightly from above; abs() so that inconsistently wound faces still shade.
    light = np.asarray(direction, np.float64) + np.array([0.0, 0.5, 0.0])
    light /= np.linalg.norm(light)
    shade = AMBIENT + (1 - AMBIENT) * np.abs(n @ light)
    rgb = np.clip(interp[..., 3:] * shade[..., None], 0.0, 1.0)
    out = np.zeros((size, size, 4), np.uint8)
    out[..., :3] = np.round(rgb * 255).astype(np.uint8)
    out[..., 3] = mask.astype(np.uint8) * 255
    out[~mask, :3] = 255
    return out


def render_views(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None, count: int, size: int,
                 rng: np.random.Generator) -> list[np.ndarray]:
    from ...meshing.cleanup import vertex_normals

    normals = np.asarray(vertex_normals(vertices, faces), np.float32)
    return [render_view(vertices, faces, normals, colors, d, size) for d in view_directions(count, rng)]

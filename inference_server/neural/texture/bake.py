"""Six generated views -> one UV texture, through ``kernels``.

Upstream's baker: every view upsampled to 2048 (Lanczos), back-projected into the atlas with
weight ``view_weight * cos^4`` of the angle between the surface normal and the view
direction, texels seen at more than 75 degrees rejected, a band of (2/512) x 2048 = 8 pixels
eroded at silhouettes and depth edges (those pixels mix object and background), a weighted
mean, then hole filling (colour propagated over the mesh, then image-space fill).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from PIL import Image

from inference_server import kernels

from .conditioning import ViewMesh, on_device, to_host

COS_POWER = 4.0
MAX_ANGLE_DEG = 75.0
ERODE_FRACTION = 2.0 / 512.0  # of the bake resolution, as upstream's bake_unreliable_kernel_size


def upsample_views(images: np.ndarray, resolution: int) -> list[np.ndarray]:
    """(N, 3, H, W) float in [0, 1] -> N arrays (resolution, resolution, 3) float32."""
    out = []
    for image in images:
        pixels = (np.clip(np.transpose(image, (1, 2, 0)), 0, 1) * 255 + 0.5).astype(np.uint8)
        if pixels.shape[0] != resolution:
            pixels = np.asarray(Image.fromarray(pixels).resize((resolution, resolution), Image.Resampling.LANCZOS))
        out.append(pixels.astype(np.float32) / 255.0)
    return out


def bake_texture(
    mesh: ViewMesh,
    uvs: np.ndarray,
    images: np.ndarray,
    views: list[kernels.View],
    texture_size: int,
    bake_resolution: int = 2048,
    on_view: Callable[[int, int], None] | None = None,
    kernel_device: str | None = None,
) -> tuple[np.ndarray, float]:
    """Bake and fill. Returns the (T, T, 3) uint8 base colour and the fraction of chart texels the
    views covered directly (the rest was filled). ``kernel_device="cuda"`` runs the kernels' GPU path."""
    upsampled = upsample_views(images, bake_resolution)

    def dev(array: Any) -> Any:
        return on_device(array, kernel_device)

    bake_views = [kernels.BakeView(dev(image), dev(view.view_proj), view.weight) for image, view in zip(upsampled, views)]
    positions, faces, uv, normals = dev(mesh.positions), dev(mesh.faces), dev(np.asarray(uvs, np.float32)), dev(mesh.normals)
    result = kernels.bake_views(
        positions, faces, uv, bake_views, texture_size,
        normals=normals, cos_power=COS_POWER, max_angle_deg=MAX_ANGLE_DEG,
        erode_px=max(1, int(round(ERODE_FRACTION * bake_resolution))), on_view=on_view,
    )
    covered = to_host(result.mask).astype(bool)
    filled = to_host(kernels.fill_holes(result.texture, result.mask, positions=positions, uvs=uv, faces=faces))
    charts = to_host(kernels.rasterize_uv(uv, faces, texture_size, texture_size).face_id) >= 0
    coverage = float((covered & charts).sum() / max(1, charts.sum()))
    texture = (np.clip(filled.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return texture, coverage


__all__ = ["bake_texture", "upsample_views"]

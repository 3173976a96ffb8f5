"""Inputs of the multi-view model: the reference image and the geometry renders of the six views.

Frames. Meshes arrive in the glTF frame (Y up, front +Z). Upstream converts them to a Z-up
frame, ``(x, y, z) -> (x, -z, y)``, before rendering, and its position and normal maps hold
coordinates of *that* frame: the geometry adapter was trained on them, so the maps here are
written in it too. Cameras stay in the glTF frame (``kernels.cameras``).

Views. Upstream's cameras (``get_orthogonal_camera``, elevation 0/±89.99, azimuth - 90) give
front, right, back, left with +Y up; the top view has the object's *front* at the top of the
image and the bottom view its *back*, so that in both the image x axis runs along -X, like
the back view and the mirrored front view. That shared column order is what the column
attention relies on; ``kernels.upstream_views`` builds exactly these cameras.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from inference_server import kernels

from ...imaging.segment import bad_image, check_rgba, has_cutout_alpha, object_mask

VIEW_NAMES = ("front", "right", "back", "left", "top", "bottom")
MESH_EXTENT = 0.5  # upstream scales the mesh so that max |v| = 0.5 inside the +-0.55 ortho box
BACKGROUND = 0.5  # raw position/normal 0 after the +0.5 and /2+0.5 offsets (upstream's background)
REFERENCE_FILL = 0.9  # the object's longer side covers 90% of the reference canvas
REFERENCE_GREY = 127  # upstream composites on 50% grey


def on_device(array: Any, device: str | None) -> Any:
    """``array`` as a torch tensor on ``device`` (the kernels then run their Triton path), or as is."""
    if device is None or device == "cpu":
        return array
    import torch

    return torch.as_tensor(np.ascontiguousarray(array), device=device)


def to_host(array: Any) -> np.ndarray:
    """A kernel output (numpy array or torch tensor on any device) as a numpy array."""
    if hasattr(array, "detach"):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def gpu_kernels_available(device: str) -> bool:
    """True when ``device`` is CUDA and the kernels' Triton implementations are installed."""
    import importlib.util

    if not str(device).startswith("cuda"):
        return False
    try:
        return all(importlib.util.find_spec(f"inference_server.kernels.{family}.triton") is not None for family in ("raster", "bake", "fill"))
    except ImportError:
        return False


def mv_views() -> list[kernels.View]:
    """The six cameras of the texture model with the baker's weights [1, 0.1, 0.5, 0.1, 0.05, 0.05]."""
    return kernels.upstream_views()


def gltf_to_upstream(vectors: np.ndarray) -> np.ndarray:
    """glTF (Y up, front +Z) -> upstream's Z-up frame (front -Y): (x, y, z) -> (x, -z, y)."""
    return np.stack([vectors[..., 0], -vectors[..., 2], vectors[..., 1]], axis=-1)


@dataclass
class ViewMesh:
    """The mesh as the views see it: centred, scaled to max|v| = 0.5, with smooth normals."""

    positions: np.ndarray  # (V, 3) float32, glTF frame, normalised
    faces: np.ndarray  # (F, 3) int64
    normals: np.ndarray  # (V, 3) float32 unit, area-weighted over position-welded vertices
    center: np.ndarray  # (3,) what was subtracted
    scale: float  # what the centred positions were multiplied by


def smooth_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, shared by vertices at the same position.

    Upstream computes them on the mesh "stitched" at UV seams, so seams do not show up as
    creases in the normal maps; welding by position does the same for any input.
    """
    keys = np.round(positions.astype(np.float64) * 1e6).astype(np.int64)
    _, weld = np.unique(keys, axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    a, b, c = (positions[faces[:, i]].astype(np.float64) for i in range(3))
    face_normals = np.cross(b - a, c - a)  # length = 2 x area: area weighting for free
    accum = np.zeros((int(weld.max()) + 1, 3))
    for i in range(3):
        np.add.at(accum, weld[faces[:, i]], face_normals)
    normals = accum[weld]
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(length > 1e-20, normals / np.maximum(length, 1e-20), np.array([0.0, 0.0, 1.0]))
    return normals.astype(np.float32)


def prepare_view_mesh(positions: np.ndarray, faces: np.ndarray) -> ViewMesh:
    """Centre on the bounding box and scale to max|v| = 0.5 (upstream only scales; centring frames
    off-centre client meshes the same way generated meshes are framed)."""
    pos = np.asarray(positions, dtype=np.float64)
    center = (pos.min(0) + pos.max(0)) * 0.5
    extent = float(np.abs(pos - center).max())
    scale = MESH_EXTENT / extent if extent > 0 else 1.0
    normalised = ((pos - center) * scale).astype(np.float32)
    tri = np.asarray(faces, dtype=np.int64)
    return ViewMesh(normalised, tri, smooth_normals(normalised, tri), center.astype(np.float32), scale)


def render_geometry(
    mesh: ViewMesh, views: list[kernels.View], resolution: int, kernel_device: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Position + normal maps: (6 views, 6 channels, H, W) float32 in [0, 1] and masks (6, H, W).

    Channels: upstream-frame position + 0.5, then upstream-frame normal / 2 + 0.5; 0.5 where
    the view sees no surface (nvdiffrast interpolates zeros there before the offsets).
    """
    pos_up = gltf_to_upstream(mesh.positions)
    nrm_up = gltf_to_upstream(mesh.normals)
    attributes = on_device(np.concatenate([pos_up, nrm_up], axis=1).astype(np.float32), kernel_device)
    positions, faces = on_device(mesh.positions, kernel_device), on_device(mesh.faces, kernel_device)
    maps = np.full((len(views), 6, resolution, resolution), BACKGROUND, np.float32)
    masks = np.zeros((len(views), resolution, resolution), bool)
    for index, view in enumerate(views):
        raster = kernels.rasterize(positions, faces, on_device(view.view_proj, kernel_device), resolution, resolution)
        hit = to_host(raster.face_id) >= 0
        values = to_host(kernels.interpolate(raster, faces, attributes))
        normal = values[..., 3:]
        normal = normal / np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
        channels = np.concatenate([np.clip(values[..., :3] + 0.5, 0, 1), np.clip(normal * 0.5 + 0.5, 0, 1)], axis=-1)
        maps[index][:, hit] = channels[hit].T
        masks[index] = hit
    return maps, masks


def prepare_reference(rgba: np.ndarray, resolution: int) -> np.ndarray:
    """(H, W, 3|4) uint8 -> (resolution, resolution, 3) uint8: the object cropped to its mask,
    longer side 90% of the canvas, centred on 50% grey (upstream's preprocessing).

    The mask is the alpha channel when the image has one, else a colour key against a plain
    background (no background-removal network here).
    """
    found = object_mask(rgba)
    rgb = np.asarray(rgba)[..., :3]
    rows, cols = np.nonzero(found.mask)
    top, bottom = max(int(rows.min()) - 1, 0), min(int(rows.max()) + 2, rgb.shape[0])
    left, right = max(int(cols.min()) - 1, 0), min(int(cols.max()) + 2, rgb.shape[1])
    crop = np.concatenate([rgb[top:bottom, left:right], found.alpha[top:bottom, left:right, None]], axis=2)
    h, w = crop.shape[:2]
    side = REFERENCE_FILL * resolution
    new_h, new_w = (int(side), max(1, int(w * side / h))) if h > w else (max(1, int(h * side / w)), int(side))
    resized = np.asarray(Image.fromarray(crop, "RGBA").resize((new_w, new_h), Image.Resampling.BICUBIC))
    canvas = np.zeros((resolution, resolution, 4), np.uint8)
    y0, x0 = (resolution - new_h) // 2, (resolution - new_w) // 2
    canvas[y0:y0 + new_h, x0:x0 + new_w] = resized
    alpha = canvas[..., 3:4].astype(np.float32) / 255.0
    out = canvas[..., :3].astype(np.float32) * alpha + REFERENCE_GREY * (1.0 - alpha)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def upstream_reference_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """Upstream's crop box (y0, y1, x0, x1), end-exclusive: the bounding box of ``alpha > 0``,
    grown by one pixel at the top and left only (its ``max(min - 1, 0)`` / ``min(max + 1, size)``)."""
    ys, xs = np.nonzero(np.asarray(alpha) > 0)
    if len(ys) == 0:
        raise bad_image("the reference image is fully transparent: there is nothing to paint from")
    h, w = alpha.shape[:2]
    return max(int(ys.min()) - 1, 0), min(int(ys.max()) + 1, h), max(int(xs.min()) - 1, 0), min(int(xs.max()) + 1, w)


def prepare_reference_upstream(rgba: np.ndarray, resolution: int) -> np.ndarray:
    """Upstream's reference preprocessing, step for step (the drop-in ``Step1X3DTexturePipeline``).

    Crop to :func:`upstream_reference_box`; longer side ``int(0.9 * resolution)``, the other
    truncated likewise; PIL's default (bicubic, premultiplied) resize; top-left corner at
    ``(resolution - size) // 2`` on a transparent canvas; composited over 0.5 grey in float32 and
    truncated to uint8. Where upstream runs its background-removal network (an image without
    a cut-out) the alpha comes from :func:`object_mask` (keying, or the server's matting model
    upstream of this call).
    """
    image = check_rgba(np.asarray(rgba))
    if not has_cutout_alpha(image):
        image = np.concatenate([image[..., :3], object_mask(image).alpha[..., None]], axis=2)
    y0, y1, x0, x1 = upstream_reference_box(image[..., 3])
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    h, w = crop.shape[:2]
    side = resolution * 0.9
    if h > w:
        w, h = max(1, int(w * side / h)), int(side)
    else:
        h, w = max(1, int(h * side / w)), int(side)
    resized = np.asarray(Image.fromarray(crop, "RGBA").resize((w, h), Image.Resampling.BICUBIC))
    canvas = np.zeros((resolution, resolution, 4), np.uint8)
    top, left = (resolution - h) // 2, (resolution - w) // 2
    canvas[top:top + h, left:left + w] = resized
    f = canvas.astype(np.float32) / np.float32(255.0)
    a = f[..., 3:4]
    out = f[..., :3] * a + (np.float32(1.0) - a) * np.float32(0.5)
    return (out * np.float32(255.0)).clip(0, 255).astype(np.uint8)


__all__ = [
    "VIEW_NAMES",
    "ViewMesh",
    "gltf_to_upstream",
    "mv_views",
    "prepare_reference",
    "prepare_reference_upstream",
    "upstream_reference_box",
    "prepare_view_mesh",
    "render_geometry",
    "smooth_normals",
]

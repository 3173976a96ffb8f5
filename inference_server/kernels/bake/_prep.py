"""Baker data types and set-up: texel samples, depth models and the reference per-view maps
(numpy + scipy; ``cpu`` and ``triton`` reimplement ``view_maps`` with the same rules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..cameras import camera_info
from ..raster import Raster, interpolate, rasterize_uv


@dataclass
class BakeView:
    """One image to bake.

    image: (H, W, C) float32 (or uint8, taken as is) in the camera's raster layout (row 0 at top).
    view_proj: (4, 4) camera, see ``kernels.cameras``. weight: the view's weight in the average.
    mask: optional (H, W) bool, where the image shows the object (texels projecting elsewhere are
    rejected, as are those within the erosion band of its edge).
    """

    image: Any
    view_proj: Any
    weight: float = 1.0
    mask: Any = None


@dataclass
class TexelSamples:
    """The surface point behind each covered texel: flat indices (N,), positions and unit normals (N, 3) float32."""

    index: np.ndarray
    positions: np.ndarray
    normals: np.ndarray
    uv_raster: Raster  # the atlas raster they came from (fill_holes reuses it)


@dataclass
class ViewMaps:
    """Per-view inputs of the accumulation kernel, in camera raster layout."""

    image: np.ndarray  # (H, W, C) float32
    linear_depth: np.ndarray  # (H, W) float32, +inf where empty
    valid: np.ndarray  # (H, W) bool: pixels allowed to contribute
    view_proj: np.ndarray  # (4, 4) float64
    orthographic: bool
    toward_camera: np.ndarray  # (3,) float64 (orthographic)
    eye: np.ndarray  # (3,) float64 (perspective)
    weight: float
    # World size of one pixel: ``footprint`` for orthographic cameras, ``footprint * linear depth``
    # for perspective ones. Depth tests allow for a surface's slope across that size.
    footprint: float
    depth: DepthModel


def face_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) float32 unit geometric normals (CCW front faces); zero for degenerate faces."""
    p = positions[faces]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.where(length > 0, length, 1.0)).astype(np.float32)


def texel_samples(
    positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray, normals: np.ndarray | None,
    width: int, height: int, backend: str,
) -> TexelSamples:
    uvr = rasterize_uv(uvs, faces, width, height, backend=backend)
    covered = uvr.face_id.reshape(-1) >= 0
    index = np.flatnonzero(covered)
    pos = interpolate(uvr, faces, positions, backend=backend).reshape(-1, 3)[index]
    if normals is None:
        nrm = face_normals(positions, faces)[uvr.face_id.reshape(-1)[index]]
    else:
        nrm = interpolate(uvr, faces, normals, backend=backend).reshape(-1, 3)[index]
        length = np.linalg.norm(nrm, axis=1, keepdims=True)
        nrm = nrm / np.where(length > 0, length, 1.0)
    return TexelSamples(index, np.ascontiguousarray(pos, np.float32), np.ascontiguousarray(nrm, np.float32), uvr)


@dataclass(frozen=True)
class DepthModel:
    """How a view's window depth maps to linear depth (world units along the view, up to a constant).

    Orthographic: lin = ndc_z * scale with ndc_z = 2 z_w - 1 (window depth) or the point's clip z.
    Perspective (pinhole, OpenGL depth row): clip z = -a w + b, so lin = w = b / (ndc_z + a).
    Both are exact, so a texel's own linear depth and the z-buffer's agree to rounding.
    """

    orthographic: bool
    scale: float
    a: float
    b: float


def depth_model(view_proj: np.ndarray, orthographic: bool) -> DepthModel:
    m = np.asarray(view_proj, np.float64)
    if orthographic:
        return DepthModel(True, float(1.0 / np.linalg.norm(m[2, :3])), 0.0, 0.0)
    a = -float(m[2, :3] @ m[3, :3] / (m[3, :3] @ m[3, :3]))
    return DepthModel(False, 1.0, a, float(m[2, 3] + a * m[3, 3]))


def linear_depth_of_points(points: np.ndarray, view_proj: np.ndarray, model: DepthModel) -> np.ndarray:
    """(N,) float64 linear depth of world points (N, 3)."""
    p = np.asarray(points, np.float64)
    if model.orthographic:
        return (p @ view_proj[2, :3] + view_proj[2, 3]) * model.scale
    return p @ view_proj[3, :3] + view_proj[3, 3]


def linear_depth_of_window(depth: np.ndarray, model: DepthModel) -> np.ndarray:
    """(H, W) float32 linear depth of a z-buffer (window depth, +inf where empty stays +inf)."""
    ndc = 2.0 * depth.astype(np.float64) - 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        lin = ndc * model.scale if model.orthographic else model.b / (ndc + model.a)
    return np.where(np.isfinite(depth), lin, np.inf).astype(np.float32)


def pixel_footprint(view_proj: np.ndarray, width: int, height: int) -> float:
    """World size of a pixel (per unit of linear depth for perspective cameras): clip x, y change by
    |row| per world unit, and a pixel spans 2 / W of NDC."""
    sx = 2.0 / (width * np.linalg.norm(view_proj[0, :3]))
    sy = 2.0 / (height * np.linalg.norm(view_proj[1, :3]))
    return float(max(sx, sy))


def view_maps(
    positions: np.ndarray, faces: np.ndarray, view: BakeView, erode_px: int, depth_edge: float, max_slope: float,
) -> ViewMaps:
    """Rasterize one view and mark the pixels allowed to contribute (numpy + scipy: the reference).

    A depth edge is a jump between neighbouring pixels over ``depth_edge`` and over what a surface
    at the steepest accepted angle (slope ``max_slope`` = tan(max angle)) climbs in 1.5 pixels.
    Pixels within ``erode_px`` (square window) of an empty pixel, a depth edge, the view mask's
    edge or the image border are rejected.
    """
    from ..raster import rasterize

    image, h, w, vp, cam, model, footprint = _view_setup(view)
    r = rasterize(positions, faces, vp, w, h, backend="reference")
    covered = r.face_id >= 0
    lin = linear_depth_of_window(r.depth, model)
    ok = covered.copy()
    if view.mask is not None:
        ok &= np.asarray(view.mask, bool).reshape(h, w)
    edge = np.zeros((h, w), bool)
    with np.errstate(invalid="ignore"):
        lo_x, lo_y = np.fmin(lin[:, 1:], lin[:, :-1]), np.fmin(lin[1:, :], lin[:-1, :])
        k = 1.5 * max_slope * footprint
        thr_x = np.maximum(depth_edge, k if model.orthographic else k * lo_x)
        thr_y = np.maximum(depth_edge, k if model.orthographic else k * lo_y)
        dx = (np.abs(lin[:, 1:] - lin[:, :-1]) > thr_x) & covered[:, 1:] & covered[:, :-1]
        dy = (np.abs(lin[1:, :] - lin[:-1, :]) > thr_y) & covered[1:, :] & covered[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    bad = ~ok | edge
    if erode_px > 0:
        bad = ndimage.maximum_filter(bad.view(np.uint8), size=2 * erode_px + 1, mode="constant", cval=1).view(bool)
    return ViewMaps(image, lin, ~bad, vp, cam.orthographic, cam.toward_camera, cam.eye, float(view.weight), footprint, model)


def _view_setup(view: BakeView) -> tuple[np.ndarray, int, int, np.ndarray, Any, DepthModel, float]:
    image = np.asarray(view.image, np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    h, w = image.shape[:2]
    vp = np.asarray(view.view_proj, np.float64)
    cam = camera_info(vp)
    return image, h, w, vp, cam, depth_model(vp, cam.orthographic), pixel_footprint(vp, w, h)

"""Weight-free texturing: project the reference images onto the mesh's UV atlas.

The front image is an orthographic view along -Z (image x -> +X, image up -> +Y), as in the
Step1X-3D baker; optional images 1-3 are the right (+X), back (-Z) and left (-X) sides. Each
prepared image shows the object cropped, recentred and scaled to fill 95% of its square canvas,
and the mesh's silhouette came from the same mask, so each camera is fitted by mapping the
mesh's bounding box (along the image's right and up axes) onto the bounding box of the image's
mask. The views are baked with the Step1X-3D weights and rules (``kernels.bake_views``), and
what no view saw is filled over the mesh, then in image space (``kernels.fill_holes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from inference_server.kernels import BakeView, bake_views, fill_holes, orthographic
from inference_server.kernels._backend import to_numpy
from inference_server.kernels.cameras import UPSTREAM_VIEW_WEIGHTS

from ..assets import MeshData
from ..pipeline.base import JobContext, PipelineError
from .delight import back_stand_in, delight, facing_ratio

STAGE = "texture"
# Reference image order after the front one, and each camera's (side of the object, image-right axis).
VIEW_NAMES: tuple[str, ...] = ("front", "right", "back", "left")
_VIEW_AXES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "front": ((0, 0, 1), (1, 0, 0)),
    "right": ((1, 0, 0), (0, 0, -1)),
    "back": ((0, 0, -1), (-1, 0, 0)),
    "left": ((-1, 0, 0), (0, 0, 1)),
}
_UP = np.array([0.0, 1.0, 0.0])


def fit_view_camera(positions: np.ndarray, mask: np.ndarray, view: str = "front") -> np.ndarray:
    """Orthographic (4, 4) camera for ``view`` that maps the mesh's bounding box onto ``mask``'s.

    positions (V, 3); mask (N, M) bool, the object's pixels in the reference image. Each axis is
    fitted on its own, so a side photo also covers a mesh whose depth was only estimated.
    """
    side, right = (np.asarray(v, float) for v in _VIEW_AXES[view])
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise PipelineError(f"the {view} reference image has an empty mask", code="bad_image")
    h, w = mask.shape
    p = np.asarray(positions, np.float64)
    a, b, d = p @ right, p @ _UP, p @ side
    a_lo, a_hi, b_lo, b_hi = a.min(), a.max(), b.min(), b.max()
    # Pixel edges of the mask's box; world units per pixel along each image axis.
    x_lo, x_hi, y_lo, y_hi = cols.min(), cols.max() + 1.0, rows.min(), rows.max() + 1.0
    ux = max(a_hi - a_lo, 1e-9) / (x_hi - x_lo)
    uy = max(b_hi - b_lo, 1e-9) / (y_hi - y_lo)
    # World point seen at the image centre (rows grow downwards, world up is +Y).
    ca = a_lo + (w / 2.0 - x_lo) * ux
    cb = b_hi - (h / 2.0 - y_lo) * uy
    depth_mid = 0.5 * (d.min() + d.max())
    center = ca * right + cb * _UP + depth_mid * side
    reach = float(np.abs(d - depth_mid).max()) + 1.0  # camera well outside the mesh, near plane in front of it
    return orthographic(side, (w / 2.0 * ux, h / 2.0 * uy), center=center, distance=reach, near=0.5,
                        far=2.0 * reach, up=_UP)


def _image_arrays(image: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        rgba = np.asarray(image.rgba)
        mask = np.asarray(image.mask, bool)
    except AttributeError as exc:
        raise PipelineError(f"reference image {index} is not a prepared image (.rgba, .mask)", code="bad_image") from exc
    if rgba.ndim != 3 or rgba.shape[2] < 3 or mask.shape != rgba.shape[:2]:
        raise PipelineError(f"reference image {index} has shape {rgba.shape} / mask {mask.shape}", code="bad_image")
    return rgba, mask


def project_texture(
    mesh: MeshData,
    images: Sequence[Any],
    *,
    texture_size: int,
    ctx: JobContext | None = None,
    view_weights: Sequence[float] = UPSTREAM_VIEW_WEIGHTS[:4],
    gutter_px: int = 8,
    backend: str = "auto",
    mirror_back: bool = True,
    mirror_detail: bool = False,
    delight_images: bool = True,
    report: dict[str, str] | None = None,
) -> np.ndarray:
    """Base colour texture (S, S, 3) uint8 (sRGB, glTF UV layout) for ``mesh`` from ``images``.

    mesh: glTF frame, with ``uvs``. images: prepared reference images (``.rgba`` (N, N, 4) uint8,
    ``.mask`` (N, N) bool), front first, then optionally right, back, left by position (``None``
    skips a side). Reports progress on ``ctx`` (stage ``"texture"``) and stops between steps when
    the job is cancelled. ``backend="triton"`` runs the kernels on the GPU (CUDA).

    ``mirror_back``: when no back image is given, an image made from the front stands in for it
    (see :func:`.delight.back_stand_in`: the blurred mirrored front for a left/right symmetric
    silhouette, the front's dominant colours otherwise, the sharp mirrored front only with
    ``mirror_detail``), so the back is never the rim colours smeared over it. ``delight_images``
    removes shading and highlights from every reference first (:func:`.delight.delight`).
    ``report`` (optional) receives ``{"back": how the back was painted}``.
    """
    if mesh.uvs is None:
        raise PipelineError("the mesh has no UVs: unwrap it before texturing", code="bad_mesh")
    if mesh.face_count == 0:
        raise PipelineError("the mesh has no faces", code="bad_mesh")
    if not images or images[0] is None:
        raise PipelineError("texturing needs at least the front reference image", code="bad_image")
    if len(images) > len(VIEW_NAMES):
        raise PipelineError(f"at most {len(VIEW_NAMES)} reference images (front, right, back, left)", code="bad_image")
    size = int(texture_size)
    if not 16 <= size <= 8192:
        raise PipelineError(f"texture size {size} is out of range", code="bad_settings")
    used = [(i, image) for i, image in enumerate(images) if image is not None]
    back = VIEW_NAMES.index("back")
    stand_in = mirror_back and all(i != back for i, _ in used)
    steps = len(used) + int(stand_in) + 2

    def progress(step: int, message: str) -> None:
        if ctx is not None:
            ctx.progress(STAGE, step, steps, message)

    progress(0, "fitting cameras to the reference images")
    positions = np.asarray(mesh.positions, np.float32)
    faces = np.asarray(mesh.faces, np.int64)
    views = []
    names = []
    front_rgb = None
    for i, image in used:
        rgba, mask = _image_arrays(image, i)
        vp = fit_view_camera(positions, mask, VIEW_NAMES[i])
        rgb = rgba[:, :, :3].astype(np.float32) / 255.0
        if delight_images:
            facing = facing_ratio(positions, faces, mesh.normals, vp, np.asarray(_VIEW_AXES[VIEW_NAMES[i]][0]),
                                  mask.shape[0]) if mask.shape[0] == mask.shape[1] else None
            rgb = delight(rgb, mask, facing)
        if i == 0:
            front_rgb = rgb
        views.append(BakeView(rgb, vp, float(view_weights[i]), mask))
        names.append(VIEW_NAMES[i])
    if report is not None:
        report["back"] = "seen" if not stand_in and any(i == back for i, _ in used) else "not painted"
    if stand_in and front_rgb is not None:
        _, front_mask = _image_arrays(images[0], 0)
        back_rgb, how = back_stand_in(front_rgb, front_mask, mirror_detail)
        back_mask = np.ascontiguousarray(front_mask[:, ::-1])
        views.append(BakeView(back_rgb, fit_view_camera(positions, back_mask, "back"), float(view_weights[back]),
                              back_mask))
        names.append("back")
        if report is not None:
            report["back"] = how

    baked = bake_views(
        positions, faces, mesh.uvs, views, size, normals=mesh.normals, backend=backend,
        on_view=lambda k, n: progress(1 + k, f"projecting the {names[k]} view"),
    )
    progress(1 + len(views), "filling what no view saw")
    filled = to_numpy(fill_holes(baked.texture, baked.mask, positions=positions, uvs=mesh.uvs, faces=faces,
                                 uv_raster=baked.uv_raster, gutter_px=gutter_px, backend=backend), np.float32)
    progress(steps, "texture done")
    return np.clip(np.rint(filled * 255.0), 0, 255).astype(np.uint8)

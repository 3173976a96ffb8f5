"""Cameras as 4x4 view-projection matrices (OpenGL clip conventions, glTF world frame).

A matrix ``M`` maps a world point ``p`` (Y up, front towards +Z) to clip space
``c = M @ [p, 1]``; NDC is ``c[:3] / c[3]`` with x right, y up, z in [-1, 1]
(-1 at the near plane). The rasterizer maps NDC x to columns and NDC y to rows
with row 0 at the top, so "image up" is +Y for the front view.

Upstream Step1X-3D renders six orthographic views of the mesh normalised to
max|v| = 0.5, with an ortho box of +-0.55 and the camera 1.8 from the origin:
front (+Z), right (+X), back (-Z), left (-X), top (+Y), bottom (-Y). Those are
:func:`upstream_views`, with the baker's per-view weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Side of the object each named camera sits on, and the world direction that is "up" in its image.
VIEW_DIRECTIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "front": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "right": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "back": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "left": ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    # As upstream's cameras: looking down, the object's front (+Z) is at the top of the image;
    # looking up, its back (-Z) is. The texture model's column attention (front mirrored, back,
    # top, bottom) relies on this orientation.
    "top": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "bottom": ((0.0, -1.0, 0.0), (0.0, 0.0, -1.0)),
}
UPSTREAM_VIEW_NAMES: tuple[str, ...] = ("front", "right", "back", "left", "top", "bottom")
UPSTREAM_VIEW_WEIGHTS: tuple[float, ...] = (1.0, 0.1, 0.5, 0.1, 0.05, 0.05)
UPSTREAM_HALF_EXTENT = 0.55
UPSTREAM_DISTANCE = 1.8


@dataclass(frozen=True)
class View:
    """A named camera: ``view_proj`` (4, 4) float64 and the baker's weight for it."""

    name: str
    view_proj: np.ndarray
    weight: float = 1.0


def _direction_and_up(direction: str | np.ndarray | tuple[float, ...], up: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(direction, str):
        if direction not in VIEW_DIRECTIONS:
            raise ValueError(f"unknown view {direction!r}; choose one of {sorted(VIEW_DIRECTIONS)}")
        d, u = VIEW_DIRECTIONS[direction]
        side, default_up = np.asarray(d, float), np.asarray(u, float)
    else:
        side = np.asarray(direction, float).reshape(3)
        side = side / np.linalg.norm(side)
        # +Y is up unless the camera looks along Y, then fall back to -Z (as for the top view).
        default_up = np.array([0.0, 1.0, 0.0]) if abs(side[1]) < 0.999 else np.array([0.0, 0.0, -np.sign(side[1])])
    return side, (default_up if up is None else np.asarray(up, float).reshape(3))


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World-to-camera (4, 4): the camera looks down its -z axis, x right, y up."""
    eye, target, up = (np.asarray(v, float).reshape(3) for v in (eye, target, up))
    f = target - eye
    f /= np.linalg.norm(f)
    r = np.cross(f, up)
    if np.linalg.norm(r) < 1e-12:
        raise ValueError("up vector is parallel to the viewing direction")
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = r, u, -f
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def orthographic(
    direction: str | np.ndarray | tuple[float, ...],
    half_extent: float | tuple[float, float] = UPSTREAM_HALF_EXTENT,
    *,
    center: tuple[float, float, float] | np.ndarray = (0.0, 0.0, 0.0),
    distance: float = UPSTREAM_DISTANCE,
    near: float = 0.1,
    far: float = 10.0,
    up: np.ndarray | None = None,
) -> np.ndarray:
    """Orthographic view-projection (4, 4) float64.

    ``direction`` is a view name (``front``, ``right``, ``back``, ``left``, ``top``,
    ``bottom``) or the world direction from ``center`` towards the camera.
    ``half_extent`` is the half width (and half height, or ``(hx, hy)``) of the
    box, in world units, centred on ``center``.
    """
    side, up_v = _direction_and_up(direction, up)
    c = np.asarray(center, float).reshape(3)
    hx, hy = (float(v) for v in np.broadcast_to(np.asarray(half_extent, float), (2,)))
    proj = np.zeros((4, 4))
    proj[0, 0] = 1.0 / hx
    proj[1, 1] = 1.0 / hy
    proj[2, 2] = -2.0 / (far - near)
    proj[2, 3] = -(far + near) / (far - near)
    proj[3, 3] = 1.0
    return proj @ look_at(c + distance * side, c, up_v)


def perspective(
    direction: str | np.ndarray | tuple[float, ...],
    fov_y_deg: float = 40.0,
    *,
    aspect: float = 1.0,
    center: tuple[float, float, float] | np.ndarray = (0.0, 0.0, 0.0),
    distance: float = 2.5,
    near: float = 0.1,
    far: float = 10.0,
    up: np.ndarray | None = None,
) -> np.ndarray:
    """Perspective view-projection (4, 4) float64 of a camera ``distance`` from ``center`` on side ``direction``."""
    side, up_v = _direction_and_up(direction, up)
    c = np.asarray(center, float).reshape(3)
    t = 1.0 / np.tan(np.radians(fov_y_deg) / 2.0)
    proj = np.zeros((4, 4))
    proj[0, 0] = t / aspect
    proj[1, 1] = t
    proj[2, 2] = -(far + near) / (far - near)
    proj[2, 3] = -2.0 * far * near / (far - near)
    proj[3, 2] = -1.0
    return proj @ look_at(c + distance * side, c, up_v)


def upstream_views(
    half_extent: float = UPSTREAM_HALF_EXTENT,
    distance: float = UPSTREAM_DISTANCE,
    weights: tuple[float, ...] = UPSTREAM_VIEW_WEIGHTS,
) -> list[View]:
    """The six orthographic views of the Step1X-3D texture stage, with the baker's weights."""
    return [
        View(name, orthographic(name, half_extent, distance=distance), float(w))
        for name, w in zip(UPSTREAM_VIEW_NAMES, weights)
    ]


@dataclass(frozen=True)
class CameraInfo:
    """Where a view-projection matrix looks from.

    Orthographic: ``toward_camera`` is the unit world direction to the camera, the same for
    every point. Perspective: ``eye`` is the camera centre.
    """

    orthographic: bool
    toward_camera: np.ndarray  # (3,) for orthographic cameras
    eye: np.ndarray  # (3,) for perspective cameras


def camera_info(view_proj: np.ndarray) -> CameraInfo:
    """Recover the camera centre (or direction) from a view-projection matrix.

    All points on one viewing ray share clip x, y and w, so the camera centre is the
    null vector of rows 0, 1 and 3; it is a point at infinity for an orthographic camera.
    """
    m = np.asarray(view_proj, float)
    null = np.linalg.svd(m[[0, 1, 3], :])[2][-1]
    if abs(null[3]) < 1e-9 * np.abs(null).max():
        d = null[:3] / np.linalg.norm(null[:3])
        # NDC z grows away from the camera (OpenGL near = -1): the camera is where it decreases.
        if m[2, :3] @ d > 0:
            d = -d
        return CameraInfo(True, d, np.zeros(3))
    return CameraInfo(False, np.zeros(3), null[:3] / null[3])

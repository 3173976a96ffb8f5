"""Weight-free geometry: inflate the front silhouette into a closed, smooth volume.

Frames. The prepared front image (see :mod:`inference_server.imaging.prepare`)
covers the square ``[-1, 1]^2`` of the glTF XY plane: image x -> +X, image up ->
+Y, and the front camera looks from +Z. The object's longer side therefore spans
about ``[-fill, fill]`` (0.95). The mesh keeps that alignment: world ``(x, y) = k * canvas
(x, y)`` with ``canvas x = 2 (col + 0.5) / size - 1`` and ``canvas y = 1 - 2 (row + 0.5) / size``,
where ``k = 1`` unless a very deep inflation had to be shrunk to fit ``[-FIT, FIT]``
(then ``k = FIT / max|coordinate|``, recoverable from the mesh and mask extents).

Volume. With ``u`` the Poisson height of the silhouette (``silhouette.py``, in
world units squared) and ``s = settings.inflate_depth``, the solid is
``z^2 <= s^2 u(x, y)``: a disk of diameter D becomes an ellipsoid of revolution
with thickness ``s * D`` (``s = 1``: a sphere). Thin parts get proportionally
thin, round cross-sections. The volume is symmetric about ``z = 0``.

Extra views (optional, in upstream's order around Y): ``images[1]`` is the right
view (camera on +X; its image x runs towards -Z), ``images[2]`` the back view,
``images[3]`` the left view (camera on -X; image x runs towards +Z). A side view
is registered to the front by matching the silhouettes' heights (orthographic
views share the Y extent) and centring its width on ``z = 0``. Its silhouette,
extruded along X, bounds the depth: the solid is the intersection of the inflated
volume with every side view's extrusion. So that the side view really sets the
depth, the inflation is deepened until the inflated thickness reaches the side
silhouette's width; ``inflate_depth`` then acts as a lower bound. The back view's
silhouette is the front's mirror image and adds no depth information: geometry
ignores it (texturing uses its colours).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from blender_addon.protocol.settings import JobSettings

from ..assets import MeshData
from ..imaging.prepare import PreparedImage
from ..meshing.cleanup import clean_mesh_with_detail
from ..meshing.extract import extract_surface
from ..pipeline.base import JobContext, PipelineError
from .silhouette import SilhouetteMaps, sample_map, signed_distance, silhouette_maps

STAGE = "geometry"
# Grid resolution = RESOLUTION_FACTOR x settings.octree_resolution (the neural backend's
# setting, default 384 -> 256 here). 256 cells over 2.1 units is 8 mm on a 1 m object, as fine
# as the 256^2 Poisson map; a field built from 2D maps has no finer detail to resolve. A 256^3
# hierarchical grid yields 200-400k faces, about the default face budget, and extracts in
# about half a second on two cores; a finer grid would mostly add faces that decimation to
# max_faces removes again. The factor keeps the artist's detail slider meaningful.
RESOLUTION_FACTOR = 2.0 / 3.0
MIN_RESOLUTION = 32
RESOLUTION = 256  # at the default octree_resolution
COARSE_DIVISOR = 4  # coarse grid = resolution / 4: two refinement levels, as upstream's 96 -> 384
MAP_SIZE = 256  # Poisson map, pixels across the canvas
BOUNDS = 1.05
FIT = 0.95  # largest half-extent after normalisation, as the image preparation's fill
SMOOTH_ITERATIONS = 3  # Taubin passes: removes marching-cubes terracing, keeps the volume
RIGHT, BACK, LEFT = 1, 2, 3
THIN_MESSAGE = (
    "the object is too thin to inflate into a solid: no part of its silhouette is wider than "
    "about 1/250 of its size"
)


@dataclass(frozen=True)
class _SideView:
    phi: np.ndarray  # signed distance in its own map pixels, positive inside
    row_of_y: tuple[float, float]  # row = a * y + b
    col_of_z: tuple[float, float]  # col = a * z + b
    px: float  # world units per map pixel of this view
    half_depth: float  # half the silhouette's width, world units


def build_geometry(
    images: list[PreparedImage],
    settings: JobSettings,
    ctx: JobContext,
    *,
    resolution: int | None = None,
    timings: dict[str, float] | None = None,
) -> MeshData:
    """Front silhouette (+ optional side views) -> watertight manifold mesh in the glTF frame."""
    return build_geometry_with_detail(images, settings, ctx, resolution=resolution, timings=timings)[0]


def build_geometry_with_detail(
    images: list[PreparedImage],
    settings: JobSettings,
    ctx: JobContext,
    *,
    resolution: int | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[MeshData, MeshData | None]:
    """:func:`build_geometry` plus the surface before decimation when decimation removed most of it
    (for a normal-map bake; see ``meshing.cleanup.clean_mesh_with_detail``).

    Front silhouette (+ optional side views) -> watertight manifold mesh in the glTF frame.

    ``resolution`` overrides the extraction grid (default: 2/3 of
    ``settings.octree_resolution``, i.e. 256 cells at the default 384).

    ``timings`` (optional) receives seconds per sub-stage: ``geometry.silhouette``,
    ``geometry.extract``, ``geometry.cleanup``.
    """
    if not images:
        raise PipelineError("at least one reference image (the front view) is needed", code="bad_image")
    if resolution is None:
        resolution = max(MIN_RESOLUTION, int(round(settings.octree_resolution * RESOLUTION_FACTOR)))
    clock = _Clock(timings)
    steps = 4
    ctx.progress(STAGE, 0, steps, "silhouette")
    front = silhouette_maps(images[0].mask, MAP_SIZE)
    sides = [_side_view(images[0], images[i], i) for i in (RIGHT, LEFT) if i < len(images)]
    field, z_scale = _inflation_field(front, sides, settings.inflate_depth)
    clock.lap("geometry.silhouette")

    ctx.progress(STAGE, 1, steps, "extracting the surface")
    vertices, faces = extract_surface(
        field, bounds=BOUNDS, resolution=resolution, coarse_resolution=max(16, resolution // COARSE_DIVISOR),
        seeds=_outline_points(front), ctx=ctx,
    )
    if len(faces) == 0:
        raise PipelineError(THIN_MESSAGE, code="bad_image")
    vertices[:, 2] *= z_scale
    clock.lap("geometry.extract")

    ctx.progress(STAGE, 2, steps, "cleaning up")
    mesh, detail = clean_mesh_with_detail(vertices, faces, max_faces=settings.max_faces,
                                          smooth_iterations=SMOOTH_ITERATIONS, ctx=ctx)
    ctx.progress(STAGE, 3, steps, "placing in the glTF frame")
    scale = _fit_scale(mesh.positions)
    mesh.positions = (mesh.positions * scale).astype(np.float32)
    if detail is not None:
        detail.positions = (detail.positions * scale).astype(np.float32)  # the same placement as the mesh
    clock.lap("geometry.cleanup")
    ctx.progress(STAGE, steps, steps, f"{mesh.face_count} faces")
    return mesh, detail


def _inflation_field(front: SilhouetteMaps, sides: list[_SideView], depth: float
                     ) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """The signed field (positive inside) in a z-squashed frame, and the squash factor.

    Deep inflations would leave the extraction bounds, so the field is evaluated at
    ``z * z_scale`` and the mesh stretched back afterwards.
    """
    px = 2.0 / front.size  # world units per map pixel
    peak = float(np.sqrt(max(front.height2.max(), 0.0))) * px  # inscribed-ish radius, world units
    if peak <= 0:
        raise PipelineError(THIN_MESSAGE, code="bad_image")
    scale = depth
    for side in sides:  # deepen so the side silhouette, not the inflation, limits the depth
        scale = max(scale, 1.05 * side.half_depth / peak)
    half_thickness = scale * peak
    z_scale = max(1.0, half_thickness / FIT)
    height2 = front.height2 * np.float32((scale * px) ** 2)  # world units squared
    norm = np.float32(1.0 / (2.0 * half_thickness))  # ~unit slope near the thickest part

    def field(points: np.ndarray) -> np.ndarray:
        x, y, z = points[:, 0], points[:, 1], points[:, 2] * np.float32(z_scale)
        rows = (1.0 - y) / px - 0.5
        cols = (x + 1.0) / px - 0.5
        value = (sample_map(height2, rows, cols) - z * z) * norm
        for side in sides:
            r = side.row_of_y[0] * y + side.row_of_y[1]
            c = side.col_of_z[0] * z + side.col_of_z[1]
            value = np.minimum(value, sample_map(side.phi, r, c) * np.float32(side.px))
        return value

    return field, z_scale


def _outline_points(front: SilhouetteMaps) -> np.ndarray:
    """World points (z = 0) just inside the outline: where the surface is known to pass.

    Seeding the extractor with them keeps parts thinner than a coarse cell (stems,
    wires, a separate thin piece) that the coarse grid would step over.
    """
    rows, cols = np.nonzero((front.phi > 0) & (front.phi <= 1.0))
    px = 2.0 / front.size
    x = (cols + 0.5) * px - 1.0
    y = 1.0 - (rows + 0.5) * px
    return np.stack([x, y, np.zeros_like(x)], axis=1).astype(np.float32)


def _side_view(front: PreparedImage, side: PreparedImage, which: int) -> _SideView:
    """Register a side view to the front one by the silhouettes' vertical extents."""
    size = MAP_SIZE
    phi = signed_distance(side.mask, size)
    ratio = side.size / size
    f_top, f_bottom = _row_extent(front.mask)
    s_top, s_bottom = _row_extent(side.mask)
    s_left, s_right = _col_extent(side.mask)
    # Front rows -> world y (canvas [-1, 1], up = +Y).
    y_top = 1.0 - 2.0 * f_top / front.size
    y_bottom = 1.0 - 2.0 * f_bottom / front.size
    # Side map rows (map pixels) as an affine function of y through the two extents.
    r_top, r_bottom = s_top / ratio - 0.5, s_bottom / ratio - 0.5
    a_y = (r_bottom - r_top) / (y_bottom - y_top)
    b_y = r_top - a_y * y_top
    px = -1.0 / a_y  # world units per side-map pixel (rows grow downwards)
    centre_col = 0.5 * (s_left + s_right) / ratio - 0.5
    z_sign = -1.0 if which == RIGHT else 1.0  # right view: image x runs towards -Z; left: towards +Z
    a_z = z_sign / px
    half_depth = 0.5 * (s_right - s_left) / ratio * px
    return _SideView(phi=phi, row_of_y=(a_y, b_y), col_of_z=(a_z, centre_col), px=px, half_depth=half_depth)


def _row_extent(mask: np.ndarray) -> tuple[float, float]:
    """Top and bottom edges of the silhouette in pixel units (edges, not centres)."""
    rows = np.flatnonzero(mask.any(axis=1))
    return float(rows[0]), float(rows[-1] + 1)


def _col_extent(mask: np.ndarray) -> tuple[float, float]:
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(cols[-1] + 1)


def _fit_scale(positions: np.ndarray) -> np.float32:
    """Factor that shrinks about the origin (never grows, never shifts) so every coordinate is within FIT.

    No shift keeps the front image's canvas aligned with world XY (see the module
    docstring); only very deep inflations trigger the shrink.
    """
    half = float(np.abs(positions).max())
    return np.float32(FIT / half) if half > FIT else np.float32(1.0)


class _Clock:
    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.sink is not None:
            self.sink[name] = self.sink.get(name, 0.0) + now - self.last
        self.last = now


__all__ = ["build_geometry", "RESOLUTION", "MAP_SIZE"]

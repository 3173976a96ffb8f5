"""Weight-free geometry: inflate the front silhouette into a closed, smooth volume.

Frames. The prepared front image (see :mod:`inference_server.imaging.prepare`)
covers the square ``[-1, 1]^2`` of the glTF XY plane: image x -> +X, image up ->
+Y, and the front camera looks from +Z. The object's longer side therefore spans
about ``[-fill, fill]`` (0.95). The mesh keeps that alignment: world ``(x, y) = k * canvas
(x, y)`` with ``canvas x = 2 (col + 0.5) / size - 1`` and ``canvas y = 1 - 2 (row + 0.5) / size``,
where ``k = 1`` unless a very deep inflation had to be shrunk to fit ``[-FIT, FIT]``
(then ``k = FIT / max|coordinate|``, recoverable from the mesh and mask extents).

Volume, front view only. The solid is the union of the silhouette's inscribed balls
(``shape_maps.round_height2``): above each pixel it reaches ``z = +-s * h(x, y)`` with ``h`` the
union's half-thickness and ``s`` the job's ``inflate_depth`` option (default 1: round). A disk becomes a
sphere, a strip a round tube of its own width, a ring a torus; parts are joined exactly where the
silhouette joins them and holes stay open. A long thin horizontal strip that something stands on
or hangs from (a table's top over its legs, a lamp's base under its post) is a plate seen edge-on:
it is as deep as a disc of its width (``shape_maps.plate_height2``); a lone rod stays a tube. The
volume is symmetric about ``z = 0``.

Extra views (optional, in upstream's order around Y): ``images[1]`` is the right
view (camera on +X; its image x runs towards -Z), ``images[2]`` the back view,
``images[3]`` the left view (camera on -X; image x runs towards +Z). A side view
is registered to the front by matching the silhouettes' heights (orthographic
views share the Y extent) and centring its width on ``z = 0``. When the front-only solid already
casts the side view's silhouette (IoU >= ``AGREEMENT_IOU``: a sphere, a ring, a dumbbell), the side
view contradicts nothing and the solid stays as it is. Otherwise the solid is a rounded visual
hull: each horizontal slice is the intersection of the front's and the side's runs in that row,
its corners rounded with the smaller of the two views' local sizes (row half-widths, and local
thicknesses taken as the largest along each vertical run so that a prism is rounded alike at its
ends and its middle), so a solid of revolution gets circular slices and a thin plate or post stays
as the views show it. A front row's run is the pixel's own part's (``shape_maps.part_runs``): where
a thin part joins a thick one (a bar at a ball) the thick part's run ends at the join, and there its
own inscribed balls bound how round it is. Safeguards keep a side view from making things worse: a
front part much thinner than what the side view shows at its place (a mug's handle in front of the
body) is hidden in that view, so its depth is its own round inflation centred on the side run that
hides it (blended as field values with the hull where a part is only partly that thin, so a join
never becomes a slab as deep as the body); rows beyond what the side view shows (registration slack
at the top or bottom) take its nearest row instead of deleting what the front shows there; and each
connected part of the front silhouette keeps one piece of surface (no slivers apart from the body).
The back view's silhouette is
the front's mirror image and adds no depth information: geometry ignores it (texturing uses
its colours).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from blender_addon.protocol.settings import JobSettings

from ..assets import MeshData
from ..imaging.prepare import PreparedImage
from ..meshing.cleanup import clean_mesh_with_detail
from ..meshing.extract import extract_surface
from ..meshing.topology import compact, face_components
from ..pipeline.base import JobContext, PipelineError
from ..pipeline.inflate import INFLATE_DEPTH, OCTREE_RESOLUTION  # this backend's declared options
from ..pipeline.options import option_value
from .shape_maps import (column_run_max, fill_outside, local_thickness, part_runs, plate_height2, round_height2,
                         row_runs, sample_stack)
from .silhouette import signed_distance

STAGE = "geometry"
# Grid resolution = RESOLUTION_FACTOR x the job's octree_resolution option (the neural backend's
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
# A front part whose local thickness is under 1/HIDDEN_RATIO of what the side view shows at its
# place is taken as hidden in that view (fully so at twice that ratio).
HIDDEN_RATIO = 1.5
# Row runs for the hull's rounding are each pixel's own part's (shape_maps.part_runs): pixels at
# least 1/PART_RATIO as thick as it, i.e. what HIDDEN_RATIO fully hides is another part.
PART_RATIO = 2.0
# A side view whose silhouette the front-only solid already casts this well (IoU) leaves it as is.
AGREEMENT_IOU = 0.95
# Side-view widening, side-map pixels. 0: widening made every hull deeper than the truth (the
# benchmark's ring 5 % too deep with 0.5 px); misregistration is met by registering extents, the
# nearest-row rule at the top and bottom and the hidden-part rule instead.
TOLERANCE_PX = 0.0
MIN_FACES = 20_000  # a round, simple object (an apple): smooth at any viewing distance
MAX_AUTO_FACES = 200_000
THIN_MESSAGE = (
    "the object is too thin to inflate into a solid: no part of its silhouette is wider than "
    "about 1/250 of its size"
)


@dataclass(frozen=True)
class _SideView:
    """A side view registered to the front; maps in world units on its own map grid."""

    # (N, N, 5): signed distance, horizontal distance to the outline within the row, half the
    # row run's width, local thickness, world z of the row run's centre (continued outside)
    stack: np.ndarray
    row_of_y: tuple[float, float]  # row = a * y + b
    col_of_z: tuple[float, float]  # col = a * z + b
    px: float  # world units per map pixel of this view
    half_depth: float  # half the silhouette's width, world units
    tolerance: float  # world units by which the silhouette is widened (registration slack)
    phi_map: np.ndarray  # signed distance in its own map pixels (for the face budget)
    rows: tuple[float, float]  # first and last map row where the view shows anything


def build_geometry(
    images: list[PreparedImage | None],  # view slots: front, right, back, left; None for a view not given
    settings: JobSettings,
    ctx: JobContext,
    *,
    resolution: int | None = None,
    timings: dict[str, float] | None = None,
) -> MeshData:
    """Front silhouette (+ optional side views) -> watertight manifold mesh in the glTF frame."""
    return build_geometry_with_detail(images, settings, ctx, resolution=resolution, timings=timings)[0]


def build_geometry_with_detail(
    images: list[PreparedImage | None],  # view slots: front, right, back, left; None for a view not given
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
    the job's ``octree_resolution`` option, i.e. 256 cells at the default 384).

    ``timings`` (optional) receives seconds per sub-stage: ``geometry.silhouette``,
    ``geometry.extract``, ``geometry.cleanup``.
    """
    if not images:
        raise PipelineError("at least one reference image (the front view) is needed", code="bad_image")
    if resolution is None:
        resolution = max(MIN_RESOLUTION, int(round(option_value(settings, OCTREE_RESOLUTION) * RESOLUTION_FACTOR)))
    clock = _Clock(timings)
    steps = 4
    ctx.progress(STAGE, 0, steps, "silhouette")
    first = images[0]
    if first is None:
        raise PipelineError("at least one reference image (the front view) is needed", code="bad_image")
    front = signed_distance(first.mask, MAP_SIZE)
    sides = [_side_view(first, side, i) for i in (RIGHT, LEFT) if i < len(images) and (side := images[i]) is not None]
    field, z_scale = _inflation_field(front, sides, option_value(settings, INFLATE_DEPTH))
    clock.lap("geometry.silhouette")

    ctx.progress(STAGE, 1, steps, "extracting the surface")
    vertices, faces = extract_surface(
        field, bounds=BOUNDS, resolution=resolution, coarse_resolution=max(16, resolution // COARSE_DIVISOR),
        seeds=_outline_points(front), ctx=ctx,
    )
    if len(faces) == 0:
        raise PipelineError(THIN_MESSAGE, code="bad_image")
    if sides:
        vertices, faces = _one_piece_per_part(vertices, faces, front)
    vertices[:, 2] *= z_scale
    clock.lap("geometry.extract")

    ctx.progress(STAGE, 2, steps, "cleaning up")
    budget = min(settings.max_faces, face_budget([front, *(side.phi_map for side in sides)]))
    mesh, detail = clean_mesh_with_detail(vertices, faces, max_faces=budget,
                                          smooth_iterations=SMOOTH_ITERATIONS, ctx=ctx)
    ctx.progress(STAGE, 3, steps, "placing in the glTF frame")
    scale = _fit_scale(mesh.positions)
    mesh.positions = (mesh.positions * scale).astype(np.float32)
    if detail is not None:
        detail.positions = (detail.positions * scale).astype(np.float32)  # the same placement as the mesh
    clock.lap("geometry.cleanup")
    ctx.progress(STAGE, steps, steps, f"{mesh.face_count} faces")
    return mesh, detail


def face_budget(phis: list[np.ndarray]) -> int:
    """Faces the shape needs: MIN_FACES for a round blob, more as the silhouettes get intricate.

    Complexity is the isoperimetric ratio ``P^2 / (4 pi A)`` of each silhouette (1 for a disk,
    about 4 for a chair, more for many thin parts), the largest over the views; the budget grows
    with its 3/4 power. ``settings.max_faces`` caps it (the backend never exceeds what was asked).
    """
    ratio = 1.0
    for phi in phis:
        inside = phi > 0
        area = float(inside.sum())
        if area <= 0:
            continue
        edge = inside ^ ndimage.binary_erosion(inside)  # outline pixels, about the perimeter
        ratio = max(ratio, float(edge.sum()) ** 2 / (4.0 * np.pi * area))
    return int(min(MAX_AUTO_FACES, MIN_FACES * ratio ** 0.75))


def _inflation_field(front: np.ndarray, sides: list[_SideView], depth: float
                     ) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """The signed field (positive inside) in a z-squashed frame, and the squash factor.

    Deep solids would leave the extraction bounds, so the field is evaluated at
    ``z * z_scale`` and the mesh stretched back afterwards. See the module docstring for
    the solid itself.
    """
    maps = _front_maps(front)
    peak = float(np.sqrt(max(maps.stack[..., 0].max(), 0.0)))  # inscribed radius, world units
    if peak <= 0:
        raise PipelineError(THIN_MESSAGE, code="bad_image")
    if sides and all(_agrees(maps, side, depth) for side in sides):
        # The round solid from the front already casts the side views' silhouettes (a sphere, a
        # ring, a dumbbell): they add nothing it contradicts, so they do not reshape it.
        sides = []
    half_z = depth * peak
    for side in sides:
        half_z = max(half_z, side.half_depth + side.tolerance)
    z_scale = max(1.0, half_z / FIT)
    depth2 = np.float32(depth * depth)
    norm = np.float32(1.0 / (2.0 * depth * peak))  # ~unit slope near the thickest part

    def field(points: np.ndarray) -> np.ndarray:
        x, y, z = points[:, 0], points[:, 1], points[:, 2] * np.float32(z_scale)
        rows, cols = maps.rows_cols(x, y)
        if not sides:
            return (depth2 * sample_stack(maps.stack[..., :1], rows, cols)[:, 0] - z * z) * norm
        height2, phi_f, run_f, half_f, thick_f, joined, part2 = sample_stack(maps.stack, rows, cols).T
        ball_f = np.sign(height2) * np.sqrt(np.abs(height2))
        value = np.full(len(points), np.inf, np.float32)
        for side in sides:
            # Rows beyond what the side view shows (registration slack at the top and bottom)
            # take its nearest row: a part the side view merely misses keeps its depth there.
            r = np.clip(side.row_of_y[0] * y + side.row_of_y[1], side.rows[0], side.rows[1])
            c = side.col_of_z[0] * z + side.col_of_z[1]
            phi_s, run_s, half_s, thick_s, centre = sample_stack(side.stack, r, c).T
            phi_s = phi_s + side.tolerance
            run_s = run_s + side.tolerance
            # Rounded visual hull: each horizontal slice is the intersection of the two views'
            # runs with its corners rounded by the smaller local size (a circle for a solid of
            # revolution, a plate for a thin part seen thin in either view).
            rho = np.minimum(np.minimum(thick_f, thick_s), np.minimum(half_f, half_s))
            a = np.maximum(rho - run_f, 0.0)
            # Where the row's nearer end is a join with a thinner part (a ball at a bar), not the
            # outline, the part's own balls bound its roundness: a circle's depth near its rim
            # is too sensitive to where the run ends for the run alone to say.
            a = a + joined * np.maximum(np.sqrt(np.maximum(rho * rho - part2, 0.0)) - a, 0.0)
            b = np.maximum(rho - run_s, 0.0)
            hull = np.minimum(rho - np.sqrt(a * a + b * b), np.minimum(phi_f, phi_s))
            # A part much thinner than what the side view shows at its place is hidden behind
            # the body in that view: its depth comes from its own inflation, centred on the
            # side run that hides it (a mug's handle, a dumbbell's bar).
            hidden = np.clip((thick_s / np.maximum(thick_f, 1e-6) - HIDDEN_RATIO) / HIDDEN_RATIO, 0.0, 1.0)
            # Blended as field values, not switched: a pixel where a thin part meets the body
            # (neither quite hidden nor not) gets a depth between the two, never a slab as deep
            # as the body.
            own = ball_f - np.abs(z - centre)
            value = np.minimum(value, hull - hidden * np.maximum(hull - own, 0.0))
        return value

    return field, z_scale


def _agrees(maps: "_FrontMaps", side: _SideView, depth: float) -> bool:
    """Whether the front-only solid's silhouette seen from this side matches the side view's
    (IoU at least AGREEMENT_IOU on the side view's map grid)."""
    n = side.phi_map.shape[0]
    shown = side.phi_map > 0
    y = (np.arange(n) - side.row_of_y[1]) / side.row_of_y[0]
    z = (np.arange(n) - side.col_of_z[1]) / side.col_of_z[0]
    front_rows = np.rint((1.0 - y) / maps.px - 0.5).astype(np.int64)
    ball = np.sqrt(np.maximum(maps.stack[..., 0], 0.0)).max(axis=1) * depth  # deepest point per front row
    valid = (front_rows >= 0) & (front_rows < ball.shape[0])
    half = np.where(valid, ball[np.clip(front_rows, 0, ball.shape[0] - 1)], 0.0)
    cast = np.abs(z)[None, :] < half[:, None]
    union = int((cast | shown).sum())
    return union > 0 and (cast & shown).sum() / union >= AGREEMENT_IOU


@dataclass(frozen=True)
class _FrontMaps:
    """The front silhouette's maps in world units on the MAP_SIZE grid over the canvas."""

    # (N, N, 7): squared half-thickness of the union of inscribed balls, signed distance,
    # horizontal distance to the end of the pixel's part's run within the row (shape_maps.part_runs),
    # half that run's width, local thickness (largest along the vertical run, see _side_view),
    # 1 where that run's nearer end is a join (0 at the outline), the part's own squared half-thickness
    stack: np.ndarray
    px: float  # world units per map pixel

    def rows_cols(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (1.0 - y) / self.px - 0.5, (x + 1.0) / self.px - 0.5


def _front_maps(phi: np.ndarray) -> _FrontMaps:
    """``phi``: the front silhouette's signed distance in map pixels."""
    px = 2.0 / phi.shape[0]
    inside = phi > 0
    thickness = fill_outside(local_thickness(phi), inside)
    runs = part_runs(phi, thickness, PART_RATIO)
    prism = fill_outside(column_run_max(thickness, inside), inside)  # rounding radius: see _side_view
    world = np.float32(px)
    height2 = round_height2(phi, thickness)  # negative outside: keeps the outline where it is
    plate = plate_height2(phi, thickness)
    height2 = np.where(plate > 0, np.maximum(height2, plate), height2)
    maps = [height2 * world * world, phi * world, runs.depth * world, runs.half_width * world,
            prism * world, runs.junction, runs.height2 * world * world]
    return _FrontMaps(stack=np.stack(maps, axis=-1).astype(np.float32), px=px)


def _one_piece_per_part(vertices: np.ndarray, faces: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep, for each connected part of the front silhouette, only the largest piece of surface
    over it.

    Why: with side views the field can leave a sliver apart from the body (where a side view's
    row has two runs and a part is half hidden in it); such a piece shows nothing the front does
    not already show with the body, and one connected silhouette must give one connected mesh.
    A separate part of the silhouette (a separate thin piece) keeps its own piece.
    """
    count, labels = face_components(faces.astype(np.int64), len(vertices))
    if count <= 1:
        return vertices, faces
    parts, n_parts = ndimage.label(phi > 0, structure=np.ones((3, 3), bool))
    if n_parts == 0:
        return vertices, faces
    _, (ri, ci) = ndimage.distance_transform_edt(parts == 0, return_indices=True)
    parts = parts[ri, ci]  # every pixel takes its nearest part: vertices on the rim find theirs
    size = phi.shape[0]
    centroid = vertices[faces].mean(axis=1)
    col = np.clip(((centroid[:, 0] + 1.0) * size / 2.0).astype(np.int64), 0, size - 1)
    row = np.clip(((1.0 - centroid[:, 1]) * size / 2.0).astype(np.int64), 0, size - 1)
    face_part = parts[row, col]
    faces_per = np.bincount(labels, minlength=count)
    part_of = np.array([np.bincount(face_part[labels == k]).argmax() for k in range(count)])
    keep = np.zeros(count, bool)
    for p in np.unique(part_of):
        members = np.flatnonzero(part_of == p)
        keep[members[np.argmax(faces_per[members])]] = True
    return compact(vertices, faces[keep[labels]])


def _outline_points(phi: np.ndarray) -> np.ndarray:
    """World points (z = 0) just inside the outline: where the surface is known to pass.

    Seeding the extractor with them keeps parts thinner than a coarse cell (stems,
    wires, a separate thin piece) that the coarse grid would step over.
    """
    rows, cols = np.nonzero((phi > 0) & (phi <= 1.0))
    px = 2.0 / phi.shape[0]
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
    inside = phi > 0
    runs = row_runs(phi)
    world = np.float32(px)
    shown = np.flatnonzero(inside.any(axis=1))
    stack = np.stack([phi * world, runs.depth * world, runs.half_width * world,
                      fill_outside(column_run_max(local_thickness(phi), inside), inside) * world,
                      ((runs.centre - centre_col) / a_z).astype(np.float32)], axis=-1)
    return _SideView(
        stack=stack.astype(np.float32),
        row_of_y=(a_y, b_y), col_of_z=(a_z, centre_col), px=px, half_depth=half_depth,
        tolerance=TOLERANCE_PX * px, phi_map=phi, rows=(float(shown[0]), float(shown[-1])),
    )


def _row_extent(mask: np.ndarray) -> tuple[float, float]:
    """Top and bottom edges of the silhouette in pixel units (edges, not centres)."""
    rows = np.flatnonzero(mask.any(axis=1))
    return float(rows[0]), float(rows[-1] + 1)


def _col_extent(mask: np.ndarray) -> tuple[float, float]:
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(cols[-1] + 1)


def _fit_scale(positions: np.ndarray) -> np.float32:
    """Factor that shrinks about the origin (never grows, never shifts) so every coordinate is
    within FIT, applied only when a coordinate leaves the canvas [-1, 1].

    No shift keeps the front image's canvas aligned with world XY (see the module
    docstring); only very deep solids trigger the shrink. A surface grazing FIT (the outline
    sits at 0.95, marching cubes and smoothing move it by a fraction of a cell) is left alone,
    so the mesh stays registered to the reference image.
    """
    half = float(np.abs(positions).max())
    return np.float32(FIT / half) if half > 1.0 else np.float32(1.0)


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

"""Stage 5: a UV atlas: few large charts by view direction (``charts.py``), our own packer.

By default (``charting="auto"``: up to VIEW_CHARTS_MAX_FACES faces) the surface is cut where it turns from facing one axis
direction to another and each chart is flattened conformally (see ``charts.py``): an apple gets
about 6-9 islands instead of 20-100. Regions that would not flatten cleanly, and everything with
``charting="xatlas"``, get xatlas' charts as follows.

xatlas with defaults spends minutes on one 200k-face mesh because its chart
clustering is single-threaded per mesh and superlinear in chart count. We cut the
mesh into edge-connected chunks of at most ``default_chunk_faces(M)`` faces (see
``partition.py``) and add each chunk to one ``xatlas.Atlas`` as its own mesh:
clustering stays small, and parametrization (LSCM with xatlas' own flip/overlap
checks) is xatlas', so no chart folds over itself and stretch stays bounded.

Packing is ours (``pack.py``): xatlas' packer filled about half the texture with
our many small charts; ours brings every chart to the same texel density, turns it
to its smallest rectangle and fills holes, for about 0.64 coverage at 2048^2 with an
8-texel gap (tests and ``benchmarks/atlas.py`` measure it). xatlas still packs its
charts (it cannot be skipped), at a small resolution where that is cheap.

Output follows ``assets.py``: vertices split at seams, one UV per vertex in [0, 1]
with v growing downwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import xatlas
from scipy import sparse
from scipy.sparse import csgraph

from ..assets import MeshData
from ..pipeline.base import JobContext, PipelineError
from .pack import pack_charts
from .charts import AXES, TURNED_FACING, conformal_or_none, face_normals, flatten_region, view_charts
from .partition import bisect_chunks, connected_chunks, face_adjacency, face_features

STAGE = "uv_atlas"
# Largest chunk handed to xatlas as one mesh, as a share of the face count, clamped.
# xatlas' clustering is superlinear in a mesh's size, so big chunks chart slowly; every
# chunk is at least one chart with a gutter around it, so small chunks cost coverage, seams
# and packing time. Measured with pack.py on 2 busy cores (seconds / coverage at 2048^2):
#   50k faces, chunks <= 500 / 1500 / 2500:  bumpy sphere 0.68/0.62, 0.62/0.65, 0.81/0.64;
#                                            apple 1.05/0.62, 0.87/0.64, 1.01/0.60
#   200k faces, chunks <= 1000 / 2000 / 4000: bumpy sphere 1.79/0.63, 1.42/0.65, 1.76/0.64;
#                                            apple 1.94/0.61, 2.11/0.64, 2.89/0.68
# so M/100 clamped to [1500, 4000] stays (1M faces: 256 chunks, about 5 s).
CHUNK_SHARE = 100
MIN_CHUNK_FACES = 1500
MAX_CHUNK_FACES = 4000
# xatlas packs its charts before we repack them: at this resolution its packing is cheap
# (about 0.05 s at 200k faces against 0.25 s at 2048). It rounds every chart's extents up
# to whole texels, a small x/y stretch that pack.uniform_density undoes.
_XATLAS_RESOLUTION = 512
# xatlas grows charts from greedily placed seeds, then (per iteration, default 1) relocates
# the seeds and grows them again. From FAST_CHARTS_FACES faces on we skip that iteration: it
# cut the unwrap's time by about a third at 20k-200k faces, for more, smaller charts on some
# meshes (apple at 50k faces: 130 charts instead of 82, 29070 vertices instead of 28742,
# i.e. 9% more seam vertices; bumpy sphere: unchanged) and the same coverage and stretch once
# packed. Below it the unwrap takes under half a second either way and the better charts win
# (5k-face apple: 23 charts instead of 53, coverage 0.65 instead of 0.60).
FAST_CHARTS_FACES = 30_000
# View charts solve one sparse LSCM system per chart, which grows faster than xatlas' chunked
# charting: measured on 2 busy cores, 20k faces 0.3 s (xatlas 2-3 s), a 328k-face bumpy sphere
# 10.2 s for 7 charts (xatlas 3.1 s for 128). The weight-free meshes (20k-140k) get view charts;
# bigger meshes (the neural backend's) keep xatlas' speed.
VIEW_CHARTS_MAX_FACES = 150_000
# A view chart under this many faces (or this share of the mesh) is small: it, and every piece of
# faces left for xatlas, tries to join a large neighbour chart (see _absorb_small).
MIN_CHART_FACES = 64
MIN_CHART_SHARE = 0.005
# When a large chart cannot take all its small neighbours at once, at most this many are tried one by one.
MAX_JOIN_TRIES = 12


def default_chunk_faces(face_count: int) -> int:
    return int(min(MAX_CHUNK_FACES, max(MIN_CHUNK_FACES, face_count // CHUNK_SHARE)))


def default_padding(texture_size: int) -> int:
    """Gap between charts in texels: 1/256 of the texture, so charts stay apart down to the 256^2 mip."""
    return max(2, texture_size // 256)


@dataclass
class UnwrapResult:
    mesh: MeshData  # split at seams, uvs in [0, 1]
    vmapping: np.ndarray  # (N_out,) int64: input vertex of each output vertex
    chart_count: int
    chunk_count: int
    texels_per_unit: float  # the texel density of every chart (texels per model unit)
    padding_px: int  # guaranteed gap between charts in texels of the requested texture size
    utilization: float  # fraction of the square texture covered by charts (exact UV area)
    seconds: float


def unwrap(
    mesh: MeshData,
    *,
    texture_size: int = 2048,
    padding_px: int | None = None,
    ctx: JobContext | None = None,
) -> MeshData:
    """Return a new mesh split at UV seams, with uvs in [0, 1] and normals carried over."""
    return unwrap_with_info(mesh, texture_size=texture_size, padding_px=padding_px, ctx=ctx).mesh


def unwrap_with_mapping(
    mesh: MeshData,
    *,
    texture_size: int = 2048,
    padding_px: int | None = None,
    ctx: JobContext | None = None,
) -> tuple[MeshData, np.ndarray]:
    """Like :func:`unwrap`, plus the input vertex index of every output vertex."""
    result = unwrap_with_info(mesh, texture_size=texture_size, padding_px=padding_px, ctx=ctx)
    return result.mesh, result.vmapping


def unwrap_with_info(
    mesh: MeshData,
    *,
    texture_size: int = 2048,
    padding_px: int | None = None,
    chunk_faces: int | None = None,
    charting: str = "auto",
    ctx: JobContext | None = None,
) -> UnwrapResult:
    """The unwrap with everything the benchmark and tests want to know.

    ``charting``: "views" (few charts, one per view direction a region faces, see ``charts.py``;
    regions that do not flatten cleanly go to xatlas), "xatlas" (xatlas' own charts on chunks of
    the mesh) or "auto" (the default: views up to VIEW_CHARTS_MAX_FACES faces, xatlas beyond).
    """
    if charting == "auto":
        charting = "views" if len(mesh.faces) <= VIEW_CHARTS_MAX_FACES else "xatlas"
    t0 = time.perf_counter()
    positions = np.ascontiguousarray(mesh.positions, dtype=np.float32)
    faces = np.ascontiguousarray(mesh.faces, dtype=np.uint32)
    _check_input(positions, faces)
    if texture_size < 16:
        raise ValueError("texture_size must be at least 16")
    target_padding = default_padding(texture_size) if padding_px is None else int(padding_px)
    if target_padding < 0:
        raise ValueError("padding_px must be >= 0")

    _progress(ctx, 0, 4, "charting by view direction" if charting == "views" else "splitting the mesh into chunks")
    # Each part: (face indices, their faces in the part's own vertex numbering, input vertex of
    # each part vertex, uv per part vertex, chart per part vertex).
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    rest = np.arange(faces.shape[0])
    chart_base = 0
    if charting == "views":
        parts, rest = _view_parts(positions, faces, ctx)
        chart_base = len(parts)
    elif charting != "xatlas":
        raise ValueError(f"charting must be 'auto', 'views' or 'xatlas', not {charting!r}")
    n_chunks = len(parts)
    if rest.size:
        _progress(ctx, 1, 4, f"charting {rest.size} faces with xatlas")
        chunk_parts = _xatlas_parts(positions, faces, rest, chunk_faces, ctx)
        n_chunks += len(chunk_parts)
        for fidx, local, verts, uv, vchart in chunk_parts:
            parts.append((fidx, local, verts, uv, np.where(vchart >= 0, vchart + chart_base, -1)))

    out_faces = np.empty_like(faces)
    offset = 0
    for fidx, local, verts, _, _ in parts:
        out_faces[fidx] = local + offset
        offset += verts.shape[0]
    vmapping = np.concatenate([part[2] for part in parts]).astype(np.int64)
    uvs = np.concatenate([part[3] for part in parts]).astype(np.float64)
    vertex_chart = np.concatenate([part[4] for part in parts]).astype(np.int64)
    face_chart = vertex_chart[out_faces[:, 0].astype(np.int64)]
    n_charts = int(vertex_chart.max()) + 1 if vertex_chart.size else 0
    if n_charts == 0:
        raise PipelineError("the UV unwrapper found no usable faces (all degenerate?)", code="bad_mesh")
    out_positions = positions[vmapping]

    _progress(ctx, 2, 4, f"packing {n_charts} charts")
    try:
        packing = pack_charts(uvs, out_positions, out_faces, face_chart, n_charts, texture_size=texture_size,
                              gap_px=max(target_padding, 1), check=None if ctx is None else ctx.check_cancelled)
    except ValueError as exc:
        raise PipelineError(f"the UV packer failed: {exc}", code="bad_mesh") from exc

    _progress(ctx, 3, 4, "assembling the split mesh")
    uvs_out = packing.uvs.astype(np.float32)
    out = MeshData(
        positions=out_positions,
        faces=out_faces,
        uvs=uvs_out,
        normals=None if mesh.normals is None else np.asarray(mesh.normals, dtype=np.float32)[vmapping],
        tangents=None,  # tangents depend on the new UVs: recompute with texturing.pbr.compute_tangents
        smooth=mesh.smooth,
    )
    tri = uvs_out.astype(np.float64)[out_faces]
    uv_area = 0.5 * np.abs((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
                           - (tri[:, 2, 0] - tri[:, 0, 0]) * (tri[:, 1, 1] - tri[:, 0, 1]))
    _progress(ctx, 4, 4, f"{n_charts} charts")
    return UnwrapResult(
        mesh=out,
        vmapping=vmapping,
        chart_count=n_charts,
        chunk_count=n_chunks,
        texels_per_unit=packing.texels_per_unit,
        padding_px=packing.gap_px,
        utilization=float(uv_area.sum()),
        seconds=time.perf_counter() - t0,
    )


def _view_parts(positions: np.ndarray, faces: np.ndarray, ctx: JobContext | None
                ) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]], np.ndarray]:
    """Charts by view direction (``charts.py``), flattened; and the faces left for xatlas."""
    labels, axes = view_charts(positions, faces)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    rest: list[np.ndarray] = []
    for k, fidx in enumerate(np.split(order, bounds)):
        if ctx is not None:
            ctx.check_cancelled()
        axis = int(axes[labels[fidx[0]]])
        # Faces turned against the chart's way (folds decimation left) would fold in any
        # flattening of the chart: xatlas gives them charts of their own.
        normals, areas = face_normals(positions, faces[fidx])
        turned = (normals @ AXES[axis] < TURNED_FACING) & (areas > 0)
        if turned.any() and not turned.all():
            rest.append(fidx[turned])
            fidx = fidx[~turned]
        verts, inverse = np.unique(faces[fidx], return_inverse=True)
        local = inverse.reshape(-1, 3).astype(np.int64)
        # One chart, or (stretched) its conformal pieces; faces the projection fallback leaves out go to xatlas.
        region = _region_parts(positions, faces, fidx, verts, local, axis, len(parts))
        parts.extend(region)
        taken = np.isin(fidx, np.concatenate([r[0] for r in region])) if region else np.zeros(len(fidx), bool)
        if not taken.all():
            rest.append(fidx[~taken])
    left = np.sort(np.concatenate(rest)) if rest else np.zeros(0, np.int64)
    return _absorb_small(positions, faces, parts, left)


Part = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _absorb_small(positions: np.ndarray, faces: np.ndarray, parts: list[Part], left: np.ndarray
                  ) -> tuple[list[Part], np.ndarray]:
    """Small charts and the edge-connected pieces of the left-over faces join the large chart they
    share most edges with, when that chart with all its joiners still flattens by LSCM without
    folds or stretch beyond MAX_AREA_STRETCH (one solve per large chart); the rest stay as they are.

    Why: crumbs at region borders (a few faces turned over by decimation, a corner where three
    regions meet) were each an island of their own, or several of xatlas'.
    """
    m = len(faces)
    owner = np.full(m, -1, np.int64)  # part of every face; left-over pieces get ids after the parts
    for k, part in enumerate(parts):
        owner[part[0]] = k
    f64 = faces.astype(np.int64)
    a, b = face_adjacency(f64)
    if left.size:
        inside = (owner[a] < 0) & (owner[b] < 0)
        graph = sparse.coo_matrix((np.ones(int(inside.sum()), np.int8), (a[inside], b[inside])), shape=(m, m))
        piece = csgraph.connected_components(graph, directed=False)[1][left]
        owner[left] = len(parts) + np.unique(piece, return_inverse=True)[1]
    n = int(owner.max()) + 1
    sizes = np.bincount(owner, minlength=n)
    small = sizes < max(MIN_CHART_FACES, int(MIN_CHART_SHARE * m))
    small[len(parts):] = True
    cross = owner[a] != owner[b]
    src = np.concatenate([owner[a][cross], owner[b][cross]])
    dst = np.concatenate([owner[b][cross], owner[a][cross]])
    keep = small[src] & ~small[dst]
    if not keep.any():
        return parts, left
    pairs, counts = np.unique(src[keep] * n + dst[keep], return_counts=True)
    order = np.lexsort((-counts, pairs // n))
    p_src, p_dst = (pairs // n)[order], (pairs % n)[order]
    first = np.r_[True, p_src[1:] != p_src[:-1]]  # the neighbour sharing most edges
    joiners: dict[int, list[int]] = {}
    for s_, d_ in zip(p_src[first], p_dst[first]):
        joiners.setdefault(int(d_), []).append(int(s_))
    others: dict[int, list[int]] = {}  # the further large neighbours, most shared edges first
    for s_, d_ in zip(p_src[~first], p_dst[~first]):
        others.setdefault(int(s_), []).append(int(d_))
    gone: set[int] = set()
    replaced: dict[int, Part] = {}
    def flattened(ids: list[int]) -> Part | None:
        fidx = np.flatnonzero(np.isin(owner, ids))
        verts, inverse = np.unique(faces[fidx], return_inverse=True)
        local = inverse.reshape(-1, 3).astype(np.int64)
        uv = conformal_or_none(positions[verts], local)
        return None if uv is None else (fidx, local, verts, uv, np.zeros(len(verts), np.int64))

    members: dict[int, list[int]] = {d_: [d_] for d_ in range(n) if not small[d_]}
    for d_, group in joiners.items():
        joined = flattened([d_, *group])
        if joined is not None:
            replaced[d_] = joined
            members[d_].extend(group)
            gone.update(group)
            continue
        # All at once folds or stretches: add them one at a time, largest first, a few tries.
        for s_ in sorted(group, key=lambda g: -sizes[g])[:MAX_JOIN_TRIES]:
            joined = flattened([*members[d_], s_])
            if joined is not None:
                replaced[d_] = joined
                members[d_].append(s_)
                gone.add(s_)
    # One that its best neighbour would not take tries the others.
    for s_, targets in others.items():
        for d_ in targets[:2]:
            if s_ in gone:
                break
            joined = flattened([*members[d_], s_])
            if joined is not None:
                replaced[d_] = joined
                members[d_].append(s_)
                gone.add(s_)
    out: list[Part] = []
    for k, part in enumerate(parts):
        if k in gone:
            continue
        part = replaced.get(k, part)
        out.append((part[0], part[1], part[2], part[3], np.full(len(part[2]), len(out), np.int64)))
    # A left-over piece that joined nothing is flattened on its own like a view region (one
    # conformal chart, or a few halves); xatlas would cut it into several. Faces even that
    # leaves out stay for xatlas.
    still_mask = np.zeros(m, bool)
    still_mask[left] = True
    still_mask[np.isin(owner, list(gone))] = False
    for k in range(len(parts), n):
        if k in gone or sizes[k] < 2:
            continue
        fidx = np.flatnonzero(owner == k)
        verts, inverse = np.unique(faces[fidx], return_inverse=True)
        local = inverse.reshape(-1, 3).astype(np.int64)
        normals, areas = face_normals(positions[verts], local)
        axis = int(np.argmax((normals * areas[:, None]).sum(axis=0) @ AXES.T))  # the way it faces most
        for part in _region_parts(positions, faces, fidx, verts, local, axis, len(out)):
            still_mask[part[0]] = False
            out.append(part)
    return out, np.flatnonzero(still_mask)


def _region_parts(positions: np.ndarray, faces: np.ndarray, fidx: np.ndarray, verts: np.ndarray,
                  local: np.ndarray, axis: int, first_chart: int) -> list[Part]:
    """The charts ``flatten_region`` makes of the faces ``fidx`` (vertices ``verts``, faces ``local``
    in their numbering), numbered from ``first_chart``."""
    out: list[Part] = []
    for sub, corner_uv in flatten_region(positions[verts], local, axis):
        chart_faces = fidx[sub]
        cverts, cinverse = np.unique(faces[chart_faces], return_inverse=True)
        uv = np.zeros((len(cverts), 2))
        uv[cinverse] = corner_uv.reshape(-1, 2)  # a vertex's corners share one uv within a chart
        out.append((chart_faces, cinverse.reshape(-1, 3).astype(np.int64), cverts, uv,
                    np.full(len(cverts), first_chart + len(out), np.int64)))
    return out


def _xatlas_parts(positions: np.ndarray, faces: np.ndarray, subset: np.ndarray, chunk_faces: int | None,
                  ctx: JobContext | None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """xatlas' charts of the faces ``subset``, in chunks (see the module docstring)."""
    sub_faces = faces[subset]
    max_chunk = max(64, int(chunk_faces or default_chunk_faces(sub_faces.shape[0])))
    labels = bisect_chunks(face_features(positions, sub_faces), max_chunk)
    labels = connected_chunks(sub_faces, labels, min_faces=max_chunk // 4)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    chunk_faces_idx = np.split(order, bounds)
    atlas = xatlas.Atlas()
    chunk_verts: list[np.ndarray] = []
    for i, fidx in enumerate(chunk_faces_idx):
        if ctx is not None and i % 64 == 0:
            ctx.check_cancelled()
        verts, inverse = np.unique(sub_faces[fidx], return_inverse=True)
        atlas.add_mesh(np.ascontiguousarray(positions[verts]),
                       np.ascontiguousarray(inverse.reshape(-1, 3).astype(np.uint32)))
        chunk_verts.append(verts)
    pack_options = xatlas.PackOptions()
    pack_options.resolution = _XATLAS_RESOLUTION
    pack_options.padding = 0
    pack_options.bilinear = False
    pack_options.rotate_charts = False
    chart_options = xatlas.ChartOptions()
    chart_options.max_iterations = 0 if faces.shape[0] >= FAST_CHARTS_FACES else 1
    atlas.generate(chart_options, pack_options)  # one C++ call: not cancellable inside
    # Per-axis normalisation by the atlas' width and height would stretch a non-square atlas:
    # back to xatlas' square texels.
    size = np.array([atlas.width, atlas.height], dtype=np.float64)
    parts = []
    for i, fidx in enumerate(chunk_faces_idx):
        vmap, idx, uv = atlas[i]
        idx = idx.reshape(-1, 3).astype(np.int64)
        if idx.shape[0] != fidx.shape[0]:
            raise PipelineError("the UV unwrapper dropped faces (degenerate input?)", code="bad_mesh")
        # Chart of every vertex; 2^32 - 1 (-1 as int32) for the vertices of degenerate faces
        # that xatlas leaves out of every chart. xatlas numbers charts across all its meshes.
        vchart = atlas.get_mesh_vertex_assignment(i)[1].view(np.int32).astype(np.int64)
        parts.append((subset[fidx], idx, chunk_verts[i][vmap], uv.astype(np.float64) * size, vchart))
    return parts


def _check_input(positions: np.ndarray, faces: np.ndarray) -> None:
    if positions.ndim != 2 or positions.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise PipelineError("a mesh needs (N, 3) positions and (M, 3) faces to be unwrapped", code="bad_mesh")
    if faces.shape[0] == 0:
        raise PipelineError("cannot unwrap a mesh without faces", code="bad_mesh")
    if int(faces.max()) >= positions.shape[0]:
        raise PipelineError("a face refers to a vertex that does not exist", code="bad_mesh")
    if not np.isfinite(positions).all():
        raise PipelineError("the mesh has non-finite vertex positions", code="bad_mesh")


def _progress(ctx: JobContext | None, step: int, total: int, message: str) -> None:
    if ctx is not None:
        ctx.progress(STAGE, step, total, message)


__all__ = ["UnwrapResult", "default_chunk_faces", "default_padding", "unwrap", "unwrap_with_info", "unwrap_with_mapping"]

"""Stage 5: a UV atlas with xatlas, fast on big meshes.

xatlas with defaults spends minutes on one 200k-face mesh because its chart
clustering is single-threaded per mesh and superlinear in chart count. We cut the
mesh into edge-connected chunks of at most ``default_chunk_faces(M)`` faces (see
``partition.py``) and add each chunk to one ``xatlas.Atlas`` as its own mesh:
clustering stays small,
parametrization (LSCM with xatlas' own flip/overlap checks) and packing are xatlas',
so charts never overlap and stretch stays bounded (tests measure both).

Output follows ``assets.py``: vertices split at seams, one UV per vertex in [0, 1]
with v growing downwards (xatlas' texel rows grow downwards too, so no flip).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import xatlas

from ..assets import MeshData
from ..pipeline.base import JobContext, PipelineError
from .partition import bisect_chunks, connected_chunks, face_features

STAGE = "uv_atlas"
# Largest chunk handed to xatlas as one mesh, as a share of the face count, clamped.
# Measured on 2 cores (uncontended): at 200k faces chunks of <=6k faces take 3.9 s,
# <=3k 3.6 s, <=1.5k 2.4 s, <=400 1.0 s (xatlas defaults: 132 s). Smaller chunks are
# faster but every chunk is at least one chart with its own gutter, so texture
# coverage falls (0.52 -> 0.47 at 200k going from 128 to 256 chunks) and seams grow.
# M/100 keeps about 100-250 chunks for 150k-400k faces, and the clamp keeps small
# meshes fast (>= 10x at 50k) and huge ones bounded (1M faces: 256 chunks, ~7-10 s).
CHUNK_SHARE = 100
MIN_CHUNK_FACES = 1500
MAX_CHUNK_FACES = 4000


def default_chunk_faces(face_count: int) -> int:
    return int(min(MAX_CHUNK_FACES, max(MIN_CHUNK_FACES, face_count // CHUNK_SHARE)))
# xatlas grows the atlas past the requested resolution (measured 1.28x at 50k and
# 1.37x at 200k faces) and we scale it back into the texture, which shrinks the
# gutters by the same factor; ask for this much more padding up front so one
# packing pass usually suffices (a second pass corrects the rare miss).
_PADDING_HEADROOM = 1.5


def default_padding(texture_size: int) -> int:
    """Gap between charts in texels: 1/256 of the texture, so charts stay apart down to the 256^2 mip."""
    return max(2, texture_size // 256)


@dataclass
class UnwrapResult:
    mesh: MeshData  # split at seams, uvs in [0, 1]
    vmapping: np.ndarray  # (N_out,) int64: input vertex of each output vertex
    chart_count: int
    chunk_count: int
    atlas_size: tuple[int, int]  # xatlas' own atlas (width, height) in texels before scaling
    padding_px: int  # guaranteed gap between charts in texels of the requested texture size
    utilization: float  # fraction of the square texture covered by charts
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
    ctx: JobContext | None = None,
) -> UnwrapResult:
    """The unwrap with everything the benchmark and tests want to know."""
    t0 = time.perf_counter()
    positions = np.ascontiguousarray(mesh.positions, dtype=np.float32)
    faces = np.ascontiguousarray(mesh.faces, dtype=np.uint32)
    _check_input(positions, faces)
    if texture_size < 16:
        raise ValueError("texture_size must be at least 16")
    target_padding = default_padding(texture_size) if padding_px is None else int(padding_px)
    if target_padding < 0:
        raise ValueError("padding_px must be >= 0")

    _progress(ctx, 0, 4, "splitting the mesh into chunks")
    max_chunk = max(64, int(chunk_faces or default_chunk_faces(faces.shape[0])))
    labels = bisect_chunks(face_features(positions, faces), max_chunk)
    labels = connected_chunks(faces, labels, min_faces=max_chunk // 4)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    chunk_faces_idx = np.split(order, bounds)

    _progress(ctx, 1, 4, f"adding {len(chunk_faces_idx)} chunks")
    atlas = xatlas.Atlas()
    chunk_verts: list[np.ndarray] = []
    for fidx in chunk_faces_idx:
        local_faces = faces[fidx]
        verts, inverse = np.unique(local_faces, return_inverse=True)
        atlas.add_mesh(
            np.ascontiguousarray(positions[verts]),
            np.ascontiguousarray(inverse.reshape(-1, 3).astype(np.uint32)),
        )
        chunk_verts.append(verts)

    _progress(ctx, 2, 4, "computing and packing charts")
    chart_options = xatlas.ChartOptions()
    pack_options = xatlas.PackOptions()
    pack_options.resolution = int(texture_size)
    pack_options.bilinear = True  # one more texel of border for bilinear filtering
    pack_options.rotate_charts = True
    # xatlas pads every chart, so the gap between two charts is twice its padding.
    pack_options.padding = int(math.ceil(target_padding / 2 * _PADDING_HEADROOM)) if target_padding else 0
    atlas.generate(chart_options, pack_options)  # one C++ call: not cancellable inside
    if _gap_px(pack_options.padding, texture_size, atlas) < target_padding:
        # The atlas grew more than the headroom assumed: pad again, scaled by what we saw.
        grow = max(atlas.width, atlas.height) / texture_size
        pack_options.padding = int(math.ceil(target_padding / 2 * grow * 1.1))
        atlas.generate(chart_options, pack_options)
    if atlas.atlas_count != 1:
        raise PipelineError(
            f"the UV packer produced {atlas.atlas_count} atlases instead of one", code="bad_mesh"
        )

    _progress(ctx, 3, 4, "assembling the split mesh")
    width, height = int(atlas.width), int(atlas.height)
    side = float(max(width, height))
    vmaps: list[np.ndarray] = []
    uv_parts: list[np.ndarray] = []
    out_faces = np.empty_like(faces)
    offset = 0
    for i, fidx in enumerate(chunk_faces_idx):
        vmap, idx, uv = atlas[i]
        idx = idx.reshape(-1, 3)
        if idx.shape[0] != fidx.shape[0]:
            raise PipelineError("the UV unwrapper dropped faces (degenerate input?)", code="bad_mesh")
        out_faces[fidx] = idx + offset
        vmaps.append(chunk_verts[i][vmap])
        uv_parts.append(uv)
        offset += vmap.shape[0]
    vmapping = np.concatenate(vmaps).astype(np.int64)
    # xatlas returns uvs normalised per axis by the atlas' width and height; a
    # non-square atlas scaled into a square texture that way would stretch texels,
    # so scale both axes by the longer side instead and keep texels square.
    uvs = np.concatenate(uv_parts).astype(np.float64) * np.array([width, height]) / side
    uvs = np.clip(uvs, 0.0, 1.0).astype(np.float32)

    out = MeshData(
        positions=positions[vmapping],
        faces=out_faces,
        uvs=uvs,
        normals=None if mesh.normals is None else np.asarray(mesh.normals, dtype=np.float32)[vmapping],
        tangents=None,  # tangents depend on the new UVs: recompute with texturing.pbr.compute_tangents
        smooth=mesh.smooth,
    )
    _progress(ctx, 4, 4, f"{atlas.chart_count} charts")
    return UnwrapResult(
        mesh=out,
        vmapping=vmapping,
        chart_count=int(atlas.chart_count),
        chunk_count=len(chunk_faces_idx),
        atlas_size=(width, height),
        padding_px=_gap_px(pack_options.padding, texture_size, atlas),
        utilization=float(atlas.utilization) * width * height / side**2,
        seconds=time.perf_counter() - t0,
    )


def _gap_px(pack_padding: int, texture_size: int, atlas: xatlas.Atlas) -> int:
    """Smallest gap between charts, in texels of the final texture, that packing guarantees."""
    return int(math.floor(2 * pack_padding * texture_size / max(atlas.width, atlas.height)))


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


__all__ = ["UnwrapResult", "default_padding", "unwrap", "unwrap_with_info", "unwrap_with_mapping", "default_chunk_faces"]

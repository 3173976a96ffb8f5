"""Pieces every backend shares: stage timing, the weight-free texture chain, LODs, provenance."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from blender_addon.protocol import provenance as prov
from blender_addon.protocol.settings import JobSettings

from .. import __version__
from ..assets import MeshData, PBRMaterial
from .base import JobContext
from .mesh_input import has_usable_uvs

T = TypeVar("T")

# Square size of the prepared reference images: the silhouette grid and the
# projection source. 1024 keeps thin parts (stems, handles) several pixels wide.
PREPARED_SIZE = 1024


class StageTimer:
    """Runs a stage between progress reports and records its wall time in ``timings``."""

    def __init__(self, ctx: JobContext, timings: dict[str, float] | None = None) -> None:
        self.ctx = ctx
        self.timings: dict[str, float] = {} if timings is None else timings

    def __call__(self, stage: str, fn: Callable[[], T], *, report: bool = True) -> T:
        if report:
            self.ctx.progress(stage, 0, 1)
        start = time.perf_counter()
        out = fn()
        self.timings[stage] = round(time.perf_counter() - start, 4)
        if report:
            self.ctx.progress(stage, 1, 1)
        return out


def projected_material(
    mesh: MeshData,
    prepared: Sequence[Any],
    settings: JobSettings,
    timer: StageTimer,
    notes: list[str],
    detail: MeshData | None = None,
    report: dict[str, str] | None = None,
    mirror_detail: bool = False,
) -> tuple[MeshData, PBRMaterial]:
    """The weight-free texture chain: UV atlas -> projection of the references -> PBR maps.

    A client mesh (texture-only job) keeps its UVs when they can carry a texture;
    otherwise it is re-unwrapped and ``notes`` says so. ``detail`` (the surface before
    decimation) lets the PBR step bake a normal map when decimation lost visible shape.
    ``report`` (optional) receives how the back was painted (see ``project_texture``);
    ``mirror_detail`` paints the front's features on a back not seen (the weight-free option).
    """
    from ..texturing.pbr import build_material
    from ..texturing.project import project_texture
    from ..texturing.tangents import compute_tangents
    from ..uv.atlas import unwrap

    ctx = timer.ctx
    if settings.mode == "texture" and has_usable_uvs(mesh):
        uv_mesh = mesh
    else:
        if settings.mode == "texture":
            notes.append("The mesh had no usable UVs, so it was given a new UV layout.")
        uv_mesh = timer("uv_atlas", lambda: unwrap(mesh, texture_size=settings.texture_size, ctx=ctx))
    base = timer("texture", lambda: project_texture(uv_mesh, prepared, texture_size=settings.texture_size, ctx=ctx,
                                                    mirror_detail=mirror_detail, report=report))
    material = timer("pbr", lambda: build_material(uv_mesh, base, pbr=settings.pbr, ctx=ctx, detail_mesh=detail))
    if material.normal is not None and uv_mesh.tangents is None:
        uv_mesh.tangents = compute_tangents(uv_mesh)
    return uv_mesh, material


def lod_chain(mesh: MeshData, settings: JobSettings, timer: StageTimer) -> list[MeshData]:
    """Coarser levels for ``settings.lods`` (fractions below 1; the full mesh is level 0)."""
    fractions = [f for f in settings.lods if f < 1.0]
    if not fractions:
        return []
    from ..export.lod import build_lods

    return timer("lods", lambda: build_lods(mesh, fractions))


def apply_size(meshes: Sequence[MeshData], size: float | None) -> float:
    """Scale every mesh about the origin so the first one's largest dimension is ``size`` metres.

    glTF is metres, so this is what an exporter writes. All meshes (the result and its LODs)
    get the same factor, which is returned; ``size=None`` leaves them as they are (factor 1).
    """
    if size is None or not meshes:
        return 1.0
    positions = np.asarray(meshes[0].positions, np.float64)
    extent = float((positions.max(axis=0) - positions.min(axis=0)).max()) if len(positions) else 0.0
    if extent <= 0.0:
        return 1.0
    factor = float(size) / extent
    for mesh in meshes:
        mesh.positions = (np.asarray(mesh.positions, np.float64) * factor).astype(np.float32)
    return factor


def provenance(backend: str, settings: JobSettings, image_names: list[str]) -> dict[str, Any]:
    """What the asset records about its making (glTF extras, Blender custom properties); keys: ``protocol/provenance.py``."""
    return prov.labelled({
        prov.GENERATOR: f"Step1X-3D for Blender {__version__}",
        prov.BACKEND: backend,
        prov.SEED: settings.seed,
        prov.SETTINGS: settings.to_wire(),
        prov.SOURCE_IMAGES: list(image_names),
    })

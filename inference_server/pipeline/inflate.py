"""The weight-free default backend: silhouette inflation + projected texture.

Runs anywhere (no GPU, no weights) and exercises the same toolchain as the
neural backend: image preparation, surface extraction, clean-up, UV atlas,
projection baking, PBR maps. Each stage reports progress, so cancel works.
"""

from __future__ import annotations

from typing import Any

from blender_addon.protocol import provenance as prov
from blender_addon.protocol.settings import VIEW_NAMES

from ..assets import Asset, MeshData, PBRMaterial
from .base import JobContext, JobRequest, PipelineError
from .mesh_input import validate_client_mesh
from .options import OptionSpec, check_job_options, option_value, specs_to_wire
from .stages import PREPARED_SIZE, StageTimer, apply_size, lod_chain, projected_material, provenance

__all__ = ["INFLATE_DEPTH", "InflatePipeline", "MIRROR_FRONT_DETAIL", "OCTREE_RESOLUTION", "OPTIONS", "provenance",
           "what_was_seen"]

# This backend's own options (job settings ``options``; advertised in capabilities, drawn by the panel).
INFLATE_DEPTH = OptionSpec(
    "inflate_depth", "float", 1.0, "Front view only: depth of the round inflation (1: round, smaller: flatter)",
    minimum=0.05, maximum=2.0)
MIRROR_FRONT_DETAIL = OptionSpec(
    "mirror_front_detail", "bool", False,
    "No back view: paint the front's features (eyes, labels) on the back too, mirrored", label="Mirror Front Detail")
OCTREE_RESOLUTION = OptionSpec(
    "octree_resolution", "int", 384, "Surface grid resolution (2/3 of it in cells per side): finer parts, slower",
    minimum=64, maximum=512, label="Resolution")
OPTIONS = (INFLATE_DEPTH, MIRROR_FRONT_DETAIL, OCTREE_RESOLUTION)



def what_was_seen(given: list[bool], mode: str, painted: dict[str, str]) -> dict[str, Any]:
    """Provenance of the guesses: which views were given and what was inferred rather than seen.

    ``inferred`` lists "back" (no back view: its colours are a stand-in, see ``texture_back``),
    "sides" (neither a right nor a left view) and "depth" (always, for a mesh built here: the
    depth comes from silhouettes, never from a view of the depth itself).
    """
    views = [name for name, present in zip(VIEW_NAMES, given) if present]
    inferred = []
    if mode != "texture":
        inferred.append("depth")
    if "back" not in views:
        inferred.append("back")
    if "right" not in views and "left" not in views:
        inferred.append("sides")
    out: dict[str, Any] = {prov.VIEWS: views, prov.INFERRED: inferred,
                           "depth_from": "front silhouette (round inflation)" if len(views) == 1 else
                           "front and side silhouettes (rounded visual hull)"}
    if mode == "texture":
        out.pop("depth_from")
    if "back" in painted:
        out["texture_back"] = painted["back"]
    return out

STAGES = {"prepare": 0.1, "geometry": 1.0, "uv_atlas": 2.0, "texture": 1.4, "pbr": 3.0, "lods": 0.3}


class InflatePipeline:
    name = "inflate"

    def __init__(self, **_options: Any) -> None:
        pass

    def capabilities(self) -> dict[str, Any]:
        return {
            "modes": ["full", "geometry", "texture"],
            "pbr": True,
            "lods": True,
            "multi_view": True,
            "device": "cpu",
            "needs_weights": False,
            "description": "weight-free: inflates the silhouette and projects the reference images",
            "options": specs_to_wire(OPTIONS),
            # Progress weights in running order, from measured stage times (2-core CPU, 2048^2 texture).
            "stages": dict(STAGES),
            "stages_by_mode": {
                "full": dict(STAGES),
                "geometry": {k: STAGES[k] for k in ("prepare", "geometry", "lods")},
                "texture": {k: STAGES[k] for k in ("prepare", "uv_atlas", "texture", "pbr", "lods")},
            },
        }

    def release_memory(self) -> None:
        """Nothing is cached between jobs."""

    def run(self, request: JobRequest, ctx: JobContext) -> Asset:
        if not request.images:
            raise PipelineError("at least one reference image is needed (the front view)", code="bad_request")
        request.settings = settings = check_job_options(request.settings, OPTIONS, self.name)
        timer = StageTimer(ctx)
        notes: list[str] = []

        from ..imaging.prepare import prepare_reference

        slots = request.view_slots()  # None where a view (right, back, left) was not given
        prepared = timer("prepare", lambda: [None if img is None else prepare_reference(img, size=PREPARED_SIZE)
                                             for img in slots])
        detail: MeshData | None = None
        if settings.mode == "texture":
            mesh = validate_client_mesh(request.mesh)
        else:
            from ..geometry.weightfree import build_geometry_with_detail

            # build_geometry adds its sub-stages (geometry.silhouette, .extract, .cleanup) to the timings.
            mesh, detail = timer(
                "geometry", lambda: build_geometry_with_detail(prepared, settings, ctx, timings=timer.timings)
            )

        material: PBRMaterial | None = None
        painted: dict[str, str] = {}
        if settings.mode != "geometry":
            mesh, material = projected_material(mesh, prepared, settings, timer, notes, detail, report=painted,
                                                mirror_detail=option_value(settings, MIRROR_FRONT_DETAIL))

        lods = lod_chain(mesh, settings, timer)
        apply_size([mesh, *lods], settings.size)
        return Asset(
            mesh=mesh,
            material=material,
            lods=lods,
            provenance={**provenance(self.name, settings, request.image_names),
                        **what_was_seen([img is not None for img in slots], settings.mode, painted)},
            timings=timer.timings,
            notes=notes,
        )

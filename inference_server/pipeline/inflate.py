"""The weight-free default backend: silhouette inflation + projected texture.

Runs anywhere (no GPU, no weights) and exercises the same toolchain as the
neural backend: image preparation, surface extraction, clean-up, UV atlas,
projection baking, PBR maps. Each stage reports progress, so cancel works.
"""

from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

from blender_addon.protocol.settings import JobSettings

from .. import __version__
from ..assets import Asset, MeshData, PBRMaterial
from .base import JobContext, JobRequest, PipelineError
from .mesh_input import has_usable_uvs, validate_client_mesh

T = TypeVar("T")

# Square size of the prepared reference images: the silhouette grid and the
# projection source. 1024 keeps thin parts (stems, handles) several pixels wide.
PREPARED_SIZE = 1024


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
        }

    def release_memory(self) -> None:
        """Nothing is cached between jobs."""

    def run(self, request: JobRequest, ctx: JobContext) -> Asset:
        if not request.images:
            raise PipelineError("at least one reference image is needed (the front view)", code="bad_request")
        settings = request.settings
        timings: dict[str, float] = {}
        notes: list[str] = []

        def timed(stage: str, fn: Callable[[], T]) -> T:
            ctx.progress(stage, 0, 1)
            start = time.perf_counter()
            out = fn()
            timings[stage] = round(time.perf_counter() - start, 4)
            ctx.progress(stage, 1, 1)
            return out

        from ..imaging.prepare import prepare_reference

        prepared = timed("prepare", lambda: [prepare_reference(img, size=PREPARED_SIZE) for img in request.images])

        if settings.mode == "texture":
            mesh = validate_client_mesh(request.mesh)
        else:
            from ..geometry.weightfree import build_geometry

            mesh = timed("geometry", lambda: build_geometry(prepared, settings, ctx))

        material: PBRMaterial | None = None
        if settings.mode != "geometry":
            mesh, material = self._texture(mesh, prepared, settings, ctx, timed, notes)

        lods: list[MeshData] = []
        if settings.lods:
            from ..export.lod import build_lods

            fractions = [f for f in settings.lods if f < 1.0]
            lods = timed("lods", lambda: build_lods(mesh, fractions))

        return Asset(
            mesh=mesh,
            material=material,
            lods=lods,
            provenance=provenance(self.name, settings, request.image_names),
            timings=timings,
            notes=notes,
        )

    def _texture(
        self,
        mesh: MeshData,
        prepared: list[Any],
        settings: JobSettings,
        ctx: JobContext,
        timed: Callable[[str, Callable[[], Any]], Any],
        notes: list[str],
    ) -> tuple[MeshData, PBRMaterial]:
        from ..texturing.pbr import build_material
        from ..texturing.tangents import compute_tangents
        from ..texturing.project import project_texture
        from ..uv.atlas import unwrap

        if settings.mode == "texture" and has_usable_uvs(mesh):
            uv_mesh = mesh
        else:
            if settings.mode == "texture":
                notes.append("The mesh had no usable UVs, so it was given a new UV layout.")
            uv_mesh = timed("uv_atlas", lambda: unwrap(mesh, texture_size=settings.texture_size, ctx=ctx))
        base = timed(
            "texture", lambda: project_texture(uv_mesh, prepared, texture_size=settings.texture_size, ctx=ctx)
        )
        material = timed("pbr", lambda: build_material(uv_mesh, base, pbr=settings.pbr, ctx=ctx))
        if material.normal is not None and uv_mesh.tangents is None:
            uv_mesh.tangents = compute_tangents(uv_mesh)
        return uv_mesh, material


def provenance(backend: str, settings: JobSettings, image_names: list[str]) -> dict[str, Any]:
    """What the asset records about its making (glTF extras, Blender custom properties)."""
    return {
        "generator": f"Step1X-3D for Blender {__version__}",
        "backend": backend,
        "seed": settings.seed,
        "settings": settings.to_wire(),
        "source_images": list(image_names),
        "AI-generated": True,
    }

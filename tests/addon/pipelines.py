"""Test backends for the add-on's server-driven tests (``--backend tests.addon.pipelines:CubePipeline``).

Deterministic and fast: a textured cube for generate jobs, the client's own
mesh (with its UVs) for texture jobs; ``SlowPipeline`` takes ~20 s in small
steps so a cancel can land mid-job.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from inference_server.assets import Asset, MeshData, PBRMaterial
from inference_server.pipeline.base import JobContext, JobRequest, PipelineError
from inference_server.pipeline.mesh_input import validate_client_mesh
from inference_server.neural.options import GEOMETRY_LORA_SCALE, STYLE_LORA_SCALE, geometry_lora, style_lora
from inference_server.pipeline.options import check_job_options, option_value, specs_to_wire

from .assets import cube_arrays, solid_rgb


def _cube_mesh(scale: float = 0.5) -> MeshData:
    arrays = cube_arrays(scale)
    return MeshData(
        positions=arrays["positions"], faces=arrays["faces"], uvs=arrays["uvs"], normals=arrays["normals"], smooth=False
    )


def _maps(size: int) -> PBRMaterial:
    yy, xx = np.mgrid[0:size, 0:size]
    checker = (((xx // 16) + (yy // 16)) % 2).astype(np.uint8)
    base = np.stack([checker * 200 + 30, np.full_like(checker, 90), 255 - checker * 200], axis=-1).astype(np.uint8)
    return PBRMaterial(base_color=base, orm=solid_rgb(size, (255, 140, 20)), normal=solid_rgb(size, (128, 128, 255)))


class CubePipeline:
    name = "test-cube"
    step_delay_s = 0.0
    steps = 4

    def __init__(self, **_options: Any) -> None:
        pass

    def capabilities(self) -> dict[str, Any]:
        return {"modes": ["full", "geometry", "texture"], "pbr": True, "lods": True, "device": "cpu"}

    def release_memory(self) -> None:
        pass

    def run(self, request: JobRequest, ctx: JobContext) -> Asset:
        if not request.images:
            raise PipelineError("at least one reference image is needed", code="bad_request")
        settings = request.settings
        for step in range(self.steps):
            ctx.progress("geometry", step, self.steps, "shaping")
            if self.step_delay_s:
                time.sleep(self.step_delay_s)
        mesh = validate_client_mesh(request.mesh) if settings.mode == "texture" else _cube_mesh()
        material = None if settings.mode == "geometry" else _maps(min(settings.texture_size, 256))
        lods = [_cube_mesh(0.5) for f in settings.lods if f < 1.0]
        ctx.progress("texture", 1, 1)
        return Asset(
            mesh=mesh,
            material=material,
            lods=lods,
            provenance={"backend": self.name, "seed": settings.seed, "source_images": list(request.image_names)},
            timings={"geometry": 0.01},
            notes=[],
        )


class SlowPipeline(CubePipeline):
    name = "test-slow"
    step_delay_s = 0.1
    steps = 200


class MediumPipeline(CubePipeline):
    """~3 s: long enough to stop and restart the server mid-job, short enough to finish after it."""

    name = "test-medium"
    step_delay_s = 0.1
    steps = 30


class LoraCubePipeline(CubePipeline):
    """Declares the neural backend's LoRA options (its declarations, with a fixed listing), as
    ``serve --lora-dir/--geometry-lora-dir`` does; the cube's edge is the geometry LoRA scale,
    so a test sees that the panel's value reached the backend."""

    name = "test-lora"
    OPTIONS = (geometry_lora(["chairs", "tables"]), GEOMETRY_LORA_SCALE, style_lora(["ink"]), STYLE_LORA_SCALE)

    def capabilities(self) -> dict[str, Any]:
        return {**super().capabilities(), "geometry_loras": ["chairs", "tables"], "texture_loras": ["ink"],
                "options": specs_to_wire(self.OPTIONS)}

    def run(self, request: JobRequest, ctx: JobContext) -> Asset:
        request.settings = check_job_options(request.settings, self.OPTIONS, self.name)
        asset = super().run(request, ctx)
        if request.settings.mode != "texture":
            asset.mesh = _cube_mesh(0.5 * option_value(request.settings, GEOMETRY_LORA_SCALE))
        return asset

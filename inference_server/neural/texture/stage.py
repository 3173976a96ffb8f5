"""The texture stage as the server runs it: mesh + reference image(s) -> UVs and PBR maps.

``TextureStage(config).run(mesh, images, settings, ctx)`` is what
``inference_server.neural.backend.Step1X3DBackend`` calls for full jobs (after geometry) and for
texture-only jobs (the artist's mesh). Sub-stages and their progress names:

    texture_prepare   UVs (kept, or a new atlas when the mesh has none usable), reference image,
                      position/normal renders of the six views
    texture_diffusion one report per denoising step; cancelling lands between steps (with
                      ``texture_sync_ratio`` > 0 the first steps are synchronised through a
                      latent UV texture, see ``sync.py``)
    texture_bake      one report per view, then hole filling and the PBR maps

The client's geometry is never changed: positions, faces and normals go back as they came;
only UVs are added (and vertices split at seams) when the mesh had no usable UVs, which the
notes say.
"""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blender_addon.protocol.settings import JobSettings

from ...assets import MeshData, PBRMaterial
from ...pipeline.base import JobContext, PipelineError
from ...pipeline.mesh_input import has_usable_uvs, validate_client_mesh
from .bake import bake_texture
from .config import MAX_TEXTURE_SIZE, TextureConfig
from .conditioning import (
    gpu_kernels_available,
    mv_views,
    prepare_reference,
    prepare_reference_upstream,
    prepare_view_mesh,
    render_geometry,
)
from .loading import load_models
from .lora import LoraInfo, lora_applied, resolve_lora_file
from ..options import STYLE_LORA, STYLE_LORA_SCALE
from ...pipeline.options import option_name, option_value
from .pipelines.multiview_sdxl import MultiViewSDXL
from .sync import LatentProjection, SyncSettings, TextureSync

log = logging.getLogger(__name__)

STAGE_PREPARE = "texture_prepare"
STAGE_DIFFUSION = "texture_diffusion"
STAGE_BAKE = "texture_bake"
STAGED_OFFLOAD_BELOW_BYTES = 40 * 1024**3  # "auto" offload: cards under 40 GB swap models between sub-stages


class TextureStage:
    def __init__(self, config: TextureConfig) -> None:
        self.config = config
        self._pipe: MultiViewSDXL | None = None
        self._lock = threading.Lock()  # one job at a time per loaded model (LoRA merges mutate weights)

    @classmethod
    def from_paths(
        cls,
        adapter_file: str | Path,
        sdxl_dir: str | Path,
        vae_dir: str | Path,
        *,
        dtype: str | torch.dtype = "auto",
        device: str | None = None,
        lora_dir: str | Path | None = None,
        **options: Any,
    ) -> "TextureStage":
        if isinstance(dtype, torch.dtype):
            dtype = str(dtype).removeprefix("torch.")
        extra: dict[str, Any] = {"device": device} if device else {}
        config = TextureConfig(adapter_file=Path(adapter_file), sdxl_dir=Path(sdxl_dir), vae_dir=Path(vae_dir),
                               lora_dir=Path(lora_dir) if lora_dir else None, dtype=dtype, **extra, **options)
        return cls(config)

    # ----------------------------------------------------------------- models
    def _staged(self) -> bool:
        if self.config.offload != "auto":
            return self.config.offload == "stages"
        device = torch.device(self.config.device)
        if device.type != "cuda":
            return False
        total = torch.cuda.get_device_properties(device).total_memory
        return total < STAGED_OFFLOAD_BELOW_BYTES

    def load(self) -> MultiViewSDXL:
        """Load the weights (first job, or explicitly at server start)."""
        if self._pipe is None:
            c = self.config
            models = load_models(c.adapter_file, c.sdxl_dir, c.vae_dir, c.torch_dtype)
            self._pipe = MultiViewSDXL(models, c.device, c.torch_dtype, staged=self._staged())
        return self._pipe

    def release_memory(self) -> None:
        """Move every model to the CPU and free the GPU cache (the protocol's free-VRAM command).

        The weights stay loaded in host memory, so the next job skips the disk read.
        """
        if self._pipe is not None:
            self._pipe.offload_all()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ----------------------------------------------------------------- job
    def run(
        self,
        mesh: MeshData,
        images: list[np.ndarray],
        settings: JobSettings,
        ctx: JobContext,
        *,
        detail_mesh: MeshData | None = None,
    ) -> tuple[MeshData, PBRMaterial, list[str]]:
        """Texture ``mesh`` after ``images[0]``; returns (mesh with UVs, material, notes for the artist).

        ``detail_mesh`` (optional, e.g. the surface before decimation) lets the toolchain bake a
        normal map where it holds detail the mesh lacks.
        """
        c = self.config
        if not images:
            raise PipelineError("the texture stage needs a reference image", code="bad_image")
        if settings.texture_size > MAX_TEXTURE_SIZE:
            raise PipelineError(f"texture_size must be at most {MAX_TEXTURE_SIZE}", code="bad_settings")
        notes: list[str] = []
        if len(images) > 1:
            notes.append("the texture model takes one reference image; the first (front) image was used")
        mesh = validate_client_mesh(mesh)

        ctx.progress(STAGE_PREPARE, 0, 3, "UV atlas")
        mesh = self._ensure_uvs(mesh, settings.texture_size, ctx, notes)
        ctx.progress(STAGE_PREPARE, 1, 3, "reference image")
        prepare = prepare_reference_upstream if c.reference_preprocessing == "upstream" else prepare_reference
        reference = prepare(images[0], c.resolution)
        ctx.progress(STAGE_PREPARE, 2, 3, "geometry renders")
        view_mesh = prepare_view_mesh(mesh.positions, mesh.faces)
        views = mv_views()
        kernel_device = c.device if gpu_kernels_available(c.device) else None
        control, _ = render_geometry(view_mesh, views, c.resolution, kernel_device)

        with self._lock:
            pipe = self.load()
            texture_sync = None
            if c.texture_sync_ratio > 0:
                assert mesh.uvs is not None  # _ensure_uvs guarantees an atlas
                latent = c.resolution // pipe.vae_scale_factor
                projection = LatentProjection.build(view_mesh, mesh.uvs, views, latent, c.texture_sync_size,
                                                    kernel_device=kernel_device)
                texture_sync = TextureSync(projection, SyncSettings(c.texture_sync_ratio, c.texture_sync_size))
            lora: AbstractContextManager[LoraInfo | None] = nullcontext(None)
            style = option_name(settings, STYLE_LORA)
            if style:
                lora = lora_applied(pipe.models.unet, resolve_lora_file(c.lora_dir, style),
                                    option_value(settings, STYLE_LORA_SCALE))
            steps = settings.texture_steps
            ctx.progress(STAGE_DIFFUSION, 0, steps, "multi-view diffusion")
            try:
                with lora as lora_info:
                    images_out = pipe(
                        reference,
                        torch.from_numpy(control),
                        num_inference_steps=steps,
                        guidance_scale=settings.texture_guidance,
                        generator=torch.Generator("cpu").manual_seed(int(settings.seed)),
                        mv_scale=c.mv_scale,
                        reference_scale=c.reference_scale,
                        control_scale=c.control_scale,
                        callback=lambda done, total: ctx.progress(STAGE_DIFFUSION, done, total, "denoising"),
                        texture_sync=texture_sync,
                    )
            except torch.cuda.OutOfMemoryError as exc:
                pipe.offload_all()
                hint = "" if pipe.staged else " (or set the texture offload option to 'stages')"
                raise PipelineError("the GPU ran out of memory while generating the texture views; free VRAM "
                                    f"and retry{hint}", code="out_of_memory", retryable=True) from exc
            if lora_info is not None:
                notes.extend(lora_info.notes)
            if pipe.staged:
                pipe.offload_all()  # the bake and PBR maps need none of the models: free the card

        n_views = len(views)
        assert mesh.uvs is not None  # _ensure_uvs guarantees an atlas
        texture, coverage = bake_texture(
            view_mesh, mesh.uvs, images_out.numpy(), views, settings.texture_size, c.bake_resolution,
            on_view=lambda i, n: ctx.progress(STAGE_BAKE, i, n + 1, f"baking view {i + 1} of {n}"),
            kernel_device=kernel_device,
        )
        ctx.progress(STAGE_BAKE, n_views, n_views + 1, "filling holes, PBR maps")
        if coverage < 0.99:
            notes.append(f"{100 * (1 - coverage):.0f}% of the texture was not seen by the six views and was "
                         "filled from neighbouring colours")
        material = self._material(mesh, texture, settings.pbr, notes, ctx, detail_mesh)
        ctx.progress(STAGE_BAKE, n_views + 1, n_views + 1, "done")
        return mesh, material, notes

    def _ensure_uvs(self, mesh: MeshData, texture_size: int, ctx: JobContext, notes: list[str]) -> MeshData:
        if has_usable_uvs(mesh):
            return mesh
        from ...uv.atlas import unwrap  # the toolchain's chunked xatlas atlas

        had_uvs = mesh.uvs is not None
        unwrapped = unwrap(replace(mesh, uvs=None), texture_size=texture_size, ctx=ctx)
        notes.append(("the mesh's UVs could not hold a texture (out of range or collapsed)" if had_uvs
                      else "the mesh had no UVs") + f": a new UV atlas was made ({mesh.vertex_count} -> "
                     f"{unwrapped.vertex_count} vertices after splitting at seams; positions unchanged)")
        return unwrapped

    @staticmethod
    def _material(
        mesh: MeshData, base_color: np.ndarray, pbr: bool, notes: list[str], ctx: JobContext,
        detail_mesh: MeshData | None,
    ) -> PBRMaterial:
        # The toolchain's maps: ORM (baked occlusion, roughness from the colour, no metal) and a
        # normal map only when a detail mesh carries geometry the mesh lacks.
        from ...texturing.pbr import build_material

        return build_material(mesh, base_color, pbr=pbr, ctx=ctx, detail_mesh=detail_mesh)


__all__ = ["STAGE_BAKE", "STAGE_DIFFUSION", "STAGE_PREPARE", "TextureStage"]

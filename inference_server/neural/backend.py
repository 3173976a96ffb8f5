"""The ``step1x3d`` backend: the official Step1X-3D models behind the server's Pipeline protocol.

``Step1X3DBackend(weights, **options)``; ``weights`` is a model folder or the repository root
holding ``Step1X-3D-Geometry-1300m`` / ``Step1X-3D-Geometry-Label-1300m`` (and optionally
``Step1X-3D-Texture``). Options (all optional, from the server's backend options):

* ``device`` (``cuda`` when there is one, else ``cpu``), ``dtype`` (bf16 on GPUs that have it,
  fp16 otherwise, fp32 on the CPU), ``vae_dtype`` (fp32), ``decode_tf32`` (True: fp32 decoding
  with TF32 matmuls on CUDA), ``compile`` (False: ``torch.compile`` the transformer),
  ``offload`` (``auto``: per-sub-stage offload on cards under 40 GB; ``none``; ``stages``),
  ``variant`` (``auto``: the Label model when a job sets a label and it is present, else base).
* ``geometry_lora_dir``: a folder of geometry LoRAs (``step1x3d finetune geometry``), listed in
  the capabilities; a job's ``geometry_lora`` option names one, merged at ``geometry_lora_scale``
  for that job only (scale 0: not applied at all).
* Texture stage: ``texture_adapter`` (the ``step1x-3d-ig2v.safetensors`` file; found under the
  weights root by default), ``sdxl_dir``, ``sdxl_vae_dir`` (found under the weights root when
  it has the ``step1x3d weights fetch`` layout), ``lora_dir``, ``texture_dtype``,
  ``texture_sync_ratio`` (0: off; upstream uses 0.5). ``offload`` applies to both stages.
  Without them (or without the texture module) full jobs are textured by the weight-free
  projection chain, and the asset's notes say so.

A job's backend options (``neural/options.py``: octree resolution, the Label model's labels, the
style and geometry LoRAs with their scales) are declared in ``capabilities()["options"]``.

Models load on the first job that needs them and stay in host memory; ``release_memory`` moves
everything off the GPU.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from blender_addon.protocol.settings import JobSettings

from ..assets import Asset, MeshData, PBRMaterial
from ..pipeline.base import JobContext, JobRequest, PipelineError
from ..pipeline.stages import (
    PREPARED_SIZE,
    StageTimer,
    apply_size,
    lod_chain,
    projected_material,
    provenance,
)
from ..pipeline.options import OptionSpec, check_job_options, option_name, option_value, specs_to_wire
from . import options as opt
from .geometry.labels import labels_from_settings
from .geometry.loader import VARIANTS, load_components, parse_dtype, resolve_model_dir
from .geometry.lora import list_geometry_loras, resolve_geometry_lora
from .geometry.pipeline import Step1X3DGeometryPipeline
from ..weights.layout import texture_paths

log = logging.getLogger(__name__)
T = TypeVar("T")

OFFLOAD_BELOW_BYTES = 40 * 1024**3
OFFLOAD_MODES = ("auto", "none", "stages")
# Progress weights in running order. The projection chain's stages come before the neural texture
# stage's because the latter reports "uv_atlas" inside "texture_prepare" when it re-unwraps, and the
# server's overall fraction never runs backwards.
STAGES = {"condition": 1.0, "sampling": 10.0, "extract": 3.0, "cleanup": 1.0,
          "uv_atlas": 2.0, "texture": 2.0, "pbr": 1.0,
          "texture_prepare": 2.0, "texture_diffusion": 8.0, "texture_bake": 2.0, "lods": 0.5}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass
class GeometryPart:
    """What the geometry stage hands the rest of the job: the mesh, the surface before decimation
    (for a normal-map bake), and the timings, notes and provenance it adds."""

    mesh: MeshData
    detail: MeshData | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


class Step1X3DBackend:
    name = "step1x3d"

    def __init__(
        self,
        weights_path: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        vae_dtype: str | None = None,
        compile: bool = False,
        decode_tf32: bool = True,
        offload: str = "auto",
        variant: str = "auto",
        texture_adapter: str | Path | None = None,
        sdxl_dir: str | Path | None = None,
        sdxl_vae_dir: str | Path | None = None,
        lora_dir: str | Path | None = None,
        geometry_lora_dir: str | Path | None = None,
        texture_dtype: str = "auto",
        texture_sync_ratio: float = 0.0,
        **_unused: Any,
    ) -> None:
        self.weights = Path(weights_path).expanduser()
        if not self.weights.is_dir():
            raise PipelineError(f"weights folder not found: {self.weights}", code="weights_missing")
        if offload not in OFFLOAD_MODES:
            raise PipelineError(f"offload must be one of {', '.join(OFFLOAD_MODES)}", code="bad_backend")
        if variant not in ("auto", *VARIANTS):
            raise PipelineError(f"variant must be auto, base or label, not {variant!r}", code="bad_backend")
        self.device = torch.device(device or default_device())
        self.dtype = parse_dtype(dtype, default_dtype(self.device))
        self.vae_dtype = parse_dtype(vae_dtype, torch.float32)
        self.compile = bool(compile)
        self.decode_tf32 = bool(decode_tf32)
        self.offload = offload
        self.variant = variant
        self.model_dirs = self._find_models()
        self.geometry_lora_dir = Path(geometry_lora_dir).expanduser() if geometry_lora_dir else None
        if self.geometry_lora_dir is not None and not self.geometry_lora_dir.is_dir():
            raise PipelineError(f"geometry LoRA folder not found: {self.geometry_lora_dir}", code="bad_backend")
        self._texture_options: dict[str, Any] = dict(adapter=texture_adapter, sdxl_dir=sdxl_dir, vae_dir=sdxl_vae_dir,
                                     lora_dir=lora_dir, dtype=texture_dtype,
                                     texture_sync_ratio=float(texture_sync_ratio))
        self._geometry: Step1X3DGeometryPipeline | None = None
        self._geometry_variant: str | None = None
        self._texture: Any = None
        self._lock = threading.Lock()

    # -- discovery -------------------------------------------------------------------------------
    def _find_models(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        if (self.weights / "transformer").is_dir():
            kind = "label" if (self.weights / "label_encoder").is_dir() else "base"
            found[kind] = self.weights
        else:
            for kind, name in VARIANTS.items():
                if (self.weights / name / "transformer").is_dir():
                    found[kind] = self.weights / name
        if not found:
            resolve_model_dir(self.weights)  # raises the descriptive weights_missing error
        if self.variant != "auto" and self.variant not in found:
            raise PipelineError(f"the {self.variant} geometry model ({VARIANTS[self.variant]}) is not in "
                                f"{self.weights}", code="weights_missing")
        return found

    def _texture_paths(self) -> tuple[Path, Path, Path] | None:
        """(adapter file, SDXL folder, SDXL VAE folder) when all are configured, else None."""
        opts = self._texture_options
        return texture_paths(self.weights, opts["adapter"], opts["sdxl_dir"], opts["vae_dir"])

    def _offload_enabled(self) -> bool:
        if self.offload != "auto":
            return self.offload == "stages"
        if self.device.type != "cuda":
            return False
        return torch.cuda.get_device_properties(self.device).total_memory < OFFLOAD_BELOW_BYTES

    # -- protocol --------------------------------------------------------------------------------
    def capabilities(self) -> dict[str, Any]:
        return {
            "modes": ["full", "geometry", "texture"],
            "pbr": True,
            "lods": True,
            "multi_view": False,
            "labels": "label" in self.model_dirs,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "needs_weights": True,
            "neural_texture": self._texture_paths() is not None,
            "stages": dict(STAGES),
            "geometry_loras": list_geometry_loras(self.geometry_lora_dir),
            "texture_loras": self._texture_loras(),
            "options": specs_to_wire(self.options()),
            "description": "Step1X-3D: official geometry weights"
            + (" (base and label models)" if len(self.model_dirs) == 2 else f" ({', '.join(self.model_dirs)} model)"),
        }

    def _texture_loras(self) -> list[str]:
        """The style LoRAs in ``--lora-dir`` (same file layout as the geometry LoRA folder)."""
        lora_dir = self._texture_options["lora_dir"]
        return list_geometry_loras(Path(lora_dir).expanduser() if lora_dir else None)

    def options(self) -> tuple[OptionSpec, ...]:
        """The job options this server can honour (see neural/options.py)."""
        specs: list[OptionSpec] = [opt.RESOLUTION]
        if "label" in self.model_dirs:
            specs.extend(opt.LABEL_OPTIONS)
        if self._texture_options["lora_dir"]:
            specs += [opt.style_lora(self._texture_loras()), opt.STYLE_LORA_SCALE]
        if self.geometry_lora_dir is not None:
            specs += [opt.geometry_lora(list_geometry_loras(self.geometry_lora_dir)), opt.GEOMETRY_LORA_SCALE]
        return tuple(specs)

    def release_memory(self) -> None:
        with self._lock:
            if self._geometry is not None:
                self._geometry.release_memory()
            if self._texture is not None:
                self._texture.release_memory()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def run(self, request: JobRequest, ctx: JobContext) -> Asset:
        if not request.images:
            raise PipelineError("at least one reference image is needed (the front view)", code="bad_request")
        request.settings = check_job_options(request.settings, self.options(), self.name)
        with self._lock:
            return self._finish(request, self._geometry_part(request, ctx), ctx)

    # -- the two halves, for engines that run them on different machines (inference_server.scale) --
    def run_geometry(self, request: JobRequest, ctx: JobContext) -> GeometryPart:
        """The geometry stage alone (for a texture-only job: the validated client mesh)."""
        if not request.images:
            raise PipelineError("at least one reference image is needed (the front view)", code="bad_request")
        request.settings = check_job_options(request.settings, self.options(), self.name)
        with self._lock:
            return self._geometry_part(request, ctx)

    def finish(self, request: JobRequest, part: GeometryPart, ctx: JobContext) -> Asset:
        """Everything after the geometry stage: texture, LODs, size, provenance. ``run`` = this after that."""
        request.settings = check_job_options(request.settings, self.options(), self.name)
        with self._lock:
            return self._finish(request, part, ctx)

    # -- stages ----------------------------------------------------------------------------------
    def _geometry_part(self, request: JobRequest, ctx: JobContext) -> GeometryPart:
        settings = request.settings
        if settings.mode == "texture":
            from ..pipeline.mesh_input import validate_client_mesh

            return GeometryPart(mesh=validate_client_mesh(request.mesh))
        notes: list[str] = []
        mesh, detail, geo_timings, variant = self._geometry_stage(request, ctx, notes)
        part = GeometryPart(mesh=mesh, detail=detail, notes=notes,
                            timings={f"geometry_{k}": round(v, 4) for k, v in geo_timings.items()},
                            provenance={"geometry_model": VARIANTS[variant]})
        if option_name(settings, opt.GEOMETRY_LORA):
            part.provenance["geometry_lora"] = {"name": option_name(settings, opt.GEOMETRY_LORA),
                                                "scale": option_value(settings, opt.GEOMETRY_LORA_SCALE)}
        return part

    def _finish(self, request: JobRequest, part: GeometryPart, ctx: JobContext) -> Asset:
        settings = request.settings
        timings = dict(part.timings)
        notes = list(part.notes)
        # The stages report their own progress; the timer only records wall time.
        timer = StageTimer(ctx, timings)
        mesh = part.mesh

        material: PBRMaterial | None = None
        if settings.mode != "geometry":
            if self._geometry is not None and self._offload_enabled():
                self._geometry.release_memory()  # small card: the texture models need the room
            mesh, material = self._texture_stage(mesh, part.detail, request, ctx, timer, notes)

        lods = lod_chain(mesh, settings, timer)
        apply_size([mesh, *lods], settings.size)

        prov = provenance(self.name, settings, request.image_names)
        prov.update(part.provenance)
        return Asset(mesh=mesh, material=material, lods=lods, provenance=prov, timings=timings, notes=notes)

    def _pick_variant(self, settings: JobSettings, notes: list[str]) -> str:
        wants_labels = labels_from_settings(settings) is not None
        if self.variant != "auto":
            kind = self.variant
        elif wants_labels and "label" in self.model_dirs:
            kind = "label"
        else:
            kind = "base" if "base" in self.model_dirs else "label"
        if wants_labels and kind != "label":
            notes.append("The symmetry/edge/pose settings need the Step1X-3D Label model, which is not "
                         "configured; they were ignored.")
        return kind

    def _geometry_pipeline(self, kind: str, ctx: JobContext) -> Step1X3DGeometryPipeline:
        if self._geometry is not None and self._geometry_variant == kind:
            return self._geometry
        if self._geometry is not None:  # one geometry model in memory at a time
            self._geometry.release_memory()
            self._geometry = None
        ctx.progress("condition", 0, 1, f"loading {VARIANTS[kind]}")
        comps = load_components(self.model_dirs[kind], self.dtype, self.vae_dtype)
        pipe = Step1X3DGeometryPipeline.from_components(comps, compile=self.compile)
        pipe.decode_tf32 = self.decode_tf32
        if self._offload_enabled():
            pipe.enable_model_cpu_offload(self.device)
        else:
            pipe.to(self.device)
        self._geometry, self._geometry_variant = pipe, kind
        return pipe

    def _geometry_stage(self, request: JobRequest, ctx: JobContext, notes: list[str]
                        ) -> tuple[MeshData, MeshData | None, dict[str, float], str]:
        """The mesh, the surface before decimation (for a normal-map bake, when decimation removed
        most of it), sub-stage timings and the model variant used."""
        settings = request.settings
        kind = self._pick_variant(settings, notes)
        pipe = self._geometry_pipeline(kind, ctx)
        if len(request.images) > 1:
            notes.append("The geometry model takes one reference image; the first (front) image was used.")
        label = labels_from_settings(settings) if kind == "label" else None
        generator = torch.Generator(device=pipe.device).manual_seed(int(settings.seed))
        lora = self._apply_geometry_lora(pipe, settings, notes)
        try:
            out = pipe.generate(
                [request.images[0]], labels=[label] if label is not None else None,
                num_inference_steps=settings.steps, guidance_scale=settings.guidance, generator=generator,
                octree_resolution=option_value(settings, opt.RESOLUTION), max_facenum=settings.max_faces, ctx=ctx)
        except torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]
            pipe.release_memory()
            raise PipelineError("the GPU ran out of memory during geometry generation; lower the octree "
                                "resolution or free VRAM and retry", code="out_of_memory", retryable=True) from exc
        finally:
            if lora:
                pipe.unload_lora_weights()
        return out.mesh[0], (out.detail[0] if out.detail else None), out.timings, kind

    def _apply_geometry_lora(self, pipe: Step1X3DGeometryPipeline, settings: JobSettings, notes: list[str]) -> bool:
        """Merge the job's geometry LoRA, if it names one with a non-zero scale; True when merged."""
        name = option_name(settings, opt.GEOMETRY_LORA)
        if not name:
            return False
        path = resolve_geometry_lora(self.geometry_lora_dir, name)
        scale = option_value(settings, opt.GEOMETRY_LORA_SCALE)
        if scale == 0:
            notes.append(f"Geometry LoRA '{path.stem}' at scale 0: the base model was used.")
            return False
        pipe.load_lora_weights(path, scale)
        notes.append(f"Geometry LoRA '{path.stem}' at scale {scale:g}.")
        return True

    def _texture_stage(self, mesh: MeshData, detail: MeshData | None, request: JobRequest, ctx: JobContext,
                       timer: StageTimer, notes: list[str]
                       ) -> tuple[MeshData, PBRMaterial]:
        stage = self._neural_texture(notes)
        if stage is not None:
            out_mesh, material, stage_notes = timer("texture_neural",
                                                    lambda: stage.run(mesh, list(request.images), request.settings, ctx,
                                                                      detail_mesh=detail),
                                                    report=False)
            notes.extend(stage_notes)
            return out_mesh, material
        from ..imaging.prepare import prepare_reference

        prepared = [None if img is None else prepare_reference(np.asarray(img), size=PREPARED_SIZE)
                    for img in request.view_slots()]
        return projected_material(mesh, prepared, request.settings, timer, notes, detail)

    def _neural_texture(self, notes: list[str]) -> Any:
        if self._texture is not None:
            return self._texture
        paths = self._texture_paths()
        if paths is None:
            notes.append("Textured by projecting the reference image (the Step1X-3D texture model is not "
                         "configured: it needs the ig2v adapter file, SDXL base and the SDXL VAE folders).")
            return None
        try:
            from .texture import TextureStage
        except ImportError as exc:
            notes.append(f"Textured by projecting the reference image (the neural texture stage is unavailable: {exc}).")
            return None
        adapter, sdxl, vae = paths
        opts = self._texture_options
        self._texture = TextureStage.from_paths(adapter, sdxl, vae, dtype=opts["dtype"], device=str(self.device),
                                                lora_dir=opts["lora_dir"], offload=self.offload,
                                                texture_sync_ratio=opts["texture_sync_ratio"])
        return self._texture

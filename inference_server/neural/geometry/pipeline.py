"""``Step1X3DGeometryPipeline``: image -> mesh with the official Step1X-3D geometry weights.

Drop-in for upstream's example (only the import line changes)::

    pipe = Step1X3DGeometryPipeline.from_pretrained(DIR, subfolder="Step1X-3D-Geometry-1300m").to("cuda")
    g = torch.Generator(device=pipe.device).manual_seed(2025)
    pipe(image, guidance_scale=7.5, num_inference_steps=50, generator=g).mesh[0].export("out.glb")

Differences from upstream, all deliberate: images may be PIL images or arrays as well as paths;
nothing is downloaded (DIR is a local folder); latents and the Euler update stay in fp32 whatever
the transformer's dtype; the VAE decodes in fp32 unless told otherwise (upstream switches to fp16,
which can overflow); the Label model's ``edge_type`` and ``pose`` labels take effect; and the
stages report progress and can be cancelled between steps through a ``JobContext``.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...assets import MeshData
from ...pipeline.base import JobContext, PipelineError
from .loader import GeometryComponents, load_components, parse_dtype, resolve_model_dir
from .models.condition import ImageConditionEncoder, LabelEncoder
from .models.transformer import Step1X3DTransformer
from .models.vae import ShapeVAE
from .preprocess import ImageInput, condition_image
from .sampling import flow_schedule, sample_flow
from .surface import LatentField, to_upstream_vertices

UPSTREAM_BAND = 0.95  # upstream also refines cells whose logits are within 0.95 of the level


@dataclass
class Step1X3DGeometryPipelineOutput:
    image: list[Any]  # the prepared condition images (PIL)
    mesh: list[Any]  # trimesh.Trimesh per output, or (vertices, faces) / MeshData / latents per output_type
    timings: dict[str, float] = field(default_factory=dict)
    # Per output: the surface before decimation when decimation removed most of it (normal-map bake).
    detail: list[Any] = field(default_factory=list)


class Step1X3DGeometryPipeline:
    """Components as in diffusers: ``transformer``, ``vae``, ``visual_encoder``, ``scheduler``,
    ``label_encoder`` (Label model only)."""

    model_cpu_offload_seq = "visual_encoder->label_encoder->transformer->vae"

    def __init__(
        self,
        transformer: Step1X3DTransformer,
        vae: ShapeVAE,
        visual_encoder: ImageConditionEncoder,
        scheduler: Any,
        label_encoder: LabelEncoder | None = None,
        *,
        compile: bool = False,
    ) -> None:
        self.transformer = transformer
        self.vae = vae
        self.visual_encoder = visual_encoder
        self.scheduler = scheduler
        self.label_encoder = label_encoder
        self.compile = compile
        # fp32 decoding on CUDA runs its matmuls in TF32: fp32's range (no overflowing logits, as
        # upstream's fp16 decode risks) at tensor-core speed. False: bit-for-bit fp32 like upstream.
        self.decode_tf32 = True
        self._device = torch.device("cpu")
        self._offload = False
        self._compiled: nn.Module | None = None
        self.last_timings: dict[str, float] = {}
        self._lora: Any = None  # the merged geometry LoRA (lora.MergedLora), if any

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        subfolder: str | None = None,
        *,
        torch_dtype: torch.dtype | str | None = None,
        vae_dtype: torch.dtype | str | None = None,
        variant: str | None = None,
        compile: bool = False,
    ) -> "Step1X3DGeometryPipeline":
        """Load from a local folder: the model folder itself, or the repository root plus ``subfolder``.

        ``torch_dtype`` sets the transformer's and encoders' precision (default fp32, as upstream's
        example); ``vae_dtype`` the decoder's (default fp32). Hub ids are not fetched.
        """
        path = Path(pretrained_model_name_or_path).expanduser()
        if not path.exists():
            raise PipelineError(
                f"weights folder not found: {path}. This pipeline never downloads; copy the official "
                "Step1X-3D weights to a local folder and pass its path", code="weights_missing")
        model_dir = resolve_model_dir(path, subfolder, variant)
        comps = load_components(model_dir, parse_dtype(torch_dtype, torch.float32), parse_dtype(vae_dtype, torch.float32))
        return cls.from_components(comps, compile=compile)

    @classmethod
    def from_components(cls, comps: GeometryComponents, *, compile: bool = False) -> "Step1X3DGeometryPipeline":
        return cls(comps.transformer, comps.vae, comps.visual_encoder, comps.scheduler, comps.label_encoder,
                   compile=compile)

    @property
    def components(self) -> dict[str, Any]:
        return {"transformer": self.transformer, "vae": self.vae, "visual_encoder": self.visual_encoder,
                "scheduler": self.scheduler, "label_encoder": self.label_encoder}

    def _modules(self) -> list[nn.Module]:
        return [m for m in (self.visual_encoder, self.label_encoder, self.transformer, self.vae) if m is not None]

    @property
    def device(self) -> torch.device:
        """The execution device (where the work runs, also under offload)."""
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dit_model.proj_in.weight.dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "Step1X3DGeometryPipeline":
        """Move every component (``dtype`` applies to all but the VAE, which keeps its decode precision)."""
        if device is not None:
            self._device = _concrete(device)
            self._offload = False
            self._compiled = None
        for m in self._modules():
            m.to(device=None if self._offload else self._device, dtype=None if m is self.vae else dtype)
        return self

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> None:
        """Keep components on the CPU and move each to ``device`` only for its sub-stage."""
        self._device = _concrete(device)
        self._offload = True
        self._compiled = None
        for m in self._modules():
            m.to("cpu")

    def release_memory(self) -> None:
        """Drop device memory: components go to the CPU; the next call brings them back."""
        for m in self._modules():
            m.to("cpu")
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @contextlib.contextmanager
    def _placed(self, *modules: nn.Module | None) -> Iterator[None]:
        """Run a sub-stage with ``modules`` on the execution device.

        Under offload they go back to the CPU afterwards; otherwise they stay (and a component
        moved off by :meth:`release_memory` simply returns here).
        """
        wanted = [m for m in modules if m is not None]
        for m in wanted:
            if next(m.parameters()).device != self._device:
                m.to(self._device)
        try:
            yield
        finally:
            if self._offload:
                for m in wanted:
                    m.to("cpu")
                if self._device.type == "cuda":
                    torch.cuda.empty_cache()

    # -- LoRA ----------------------------------------------------------------------------------
    def load_lora_weights(self, path: str | Path, scale: float = 1.0) -> None:
        """Merge a geometry LoRA (``step1x3d finetune geometry``'s safetensors) into the transformer;
        it replaces one loaded before. :meth:`unload_lora_weights` restores the base weights exactly."""
        from .lora import merge_lora

        self.unload_lora_weights()
        self._lora = merge_lora(self.transformer, Path(path), scale)

    def unload_lora_weights(self) -> None:
        from .lora import unmerge_lora

        if self._lora is not None:
            unmerge_lora(self.transformer, self._lora)
            self._lora = None

    # -- stages --------------------------------------------------------------------------------
    def encode_condition(
        self, images: Sequence[Any], labels: Sequence[Mapping[str, Any] | None] | None, cfg: bool
    ) -> torch.Tensor:
        """Condition tokens for the transformer, ``[uncond..., cond...]`` when ``cfg``."""
        with self._placed(self.visual_encoder, self.label_encoder):
            visual = self.visual_encoder.encode(images)
            uncond_visual = self.visual_encoder.unconditional(visual.shape[0])
            label_tokens = uncond_labels = None
            if self.transformer.config.use_label_condition:
                if self.label_encoder is None:
                    raise PipelineError("this transformer needs label_encoder/ weights", code="weights_missing")
                uncond_labels = self.label_encoder.unconditional(visual.shape[0])
                given = list(labels) if labels is not None else [None] * visual.shape[0]
                if all(lab is None for lab in given):
                    label_tokens = uncond_labels  # upstream: no label means the empty label on both halves
                else:
                    label_tokens = torch.cat([
                        self.label_encoder.encode([lab]) if lab is not None else uncond_labels[:1] for lab in given
                    ])
            cond = self.transformer.assemble_condition(visual, label_tokens)
            if not cfg:
                return cond
            uncond = self.transformer.assemble_condition(uncond_visual, uncond_labels)
            return torch.cat([uncond, cond])

    def prepare_latents(self, batch: int, generator: torch.Generator | list[torch.Generator] | None,
                        latents: torch.Tensor | None = None) -> torch.Tensor:
        from diffusers.utils.torch_utils import randn_tensor

        if latents is not None:
            return latents.to(self._device, torch.float32)
        shape = (batch, *self.vae.latent_shape)
        return randn_tensor(shape, generator=generator, device=self._device, dtype=torch.float32)

    def _velocity_model(self) -> nn.Module:
        if not self.compile:
            return self.transformer
        if self._compiled is None:
            self._compiled = torch.compile(self.transformer, dynamic=False)  # type: ignore[assignment]
        return self._compiled  # type: ignore[return-value]

    def sample(
        self,
        condition: torch.Tensor,
        latents: torch.Tensor,
        num_inference_steps: int,
        guidance_scale: float,
        *,
        zero_init_steps: int = 1,
        ctx: JobContext | None = None,
    ) -> torch.Tensor:
        schedule = flow_schedule(self.scheduler, num_inference_steps)
        cond = condition.to(self._device, self.dtype)
        with self._placed(self.transformer), torch.no_grad():
            model = self._velocity_model()

            def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return model(x, t, condition=cond)

            def report(done: int, total: int) -> None:
                if ctx is not None:
                    ctx.progress("sampling", done, total, f"step {done}/{total}")

            if ctx is not None:
                ctx.progress("sampling", 0, schedule.steps, "sampling")
            return sample_flow(velocity, latents, schedule, guidance_scale, zero_init_steps=zero_init_steps,
                               callback=report)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, 2048, 64]`` -> decoded latent sets (the VAE must be placed)."""
        return self.vae.decode(latents.to(self._device))

    def extract(
        self,
        decoded: torch.Tensor,
        *,
        bounds: float = 1.05,
        octree_resolution: int = 384,
        mc_level: float = 0.0,
        upstream_vertices: bool = True,
        chunk_size: int | None = None,
        ctx: JobContext | None = None,
        close_shell: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One decoded latent set ``[1, N, W]`` -> (vertices, faces) via the shared hierarchical extractor.

        ``close_shell`` (ours, the product's): a surface that meets the sampling box is closed there;
        False is upstream's extraction, which leaves it open (the drop-in ``__call__``)."""
        from ...meshing.extract import extract_surface

        field_fn = LatentField(self.vae, decoded, chunk_size)
        with _tf32_matmul(self._device, self.decode_tf32):
            verts, faces = extract_surface(field_fn, bounds=bounds, resolution=octree_resolution,
                                           coarse_resolution=octree_coarse(octree_resolution), level=mc_level,
                                           batch_size=max(field_fn.chunk_size, 262_144), band=UPSTREAM_BAND, ctx=ctx,
                                           close_shell=close_shell)
        if upstream_vertices and len(verts):
            verts = to_upstream_vertices(verts, bounds, octree_resolution)
        return verts, faces

    # -- whole runs ------------------------------------------------------------------------------
    def generate(
        self,
        images: Sequence[ImageInput],
        *,
        labels: Sequence[Mapping[str, Any] | None] | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 7.5,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        foreground_ratio: float = 0.95,
        bounds: float = 1.05,
        mc_level: float = 0.0,
        octree_resolution: int = 384,
        max_facenum: int = 200_000,
        do_remove_floater: bool = True,
        do_reduce_face: bool = True,
        use_zero_init: bool = True,
        zero_steps: int = 0,
        output_type: str = "mesh_data",
        ctx: JobContext | None = None,
        close_shell: bool = True,
    ) -> Step1X3DGeometryPipelineOutput:
        """The staged run behind ``__call__`` and the server backend; see ``__call__`` for arguments."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if ctx is not None:
            ctx.progress("condition", 0, 1, "encoding the reference image")
        prepared = [condition_image(img, foreground_ratio) for img in images]
        cfg = guidance_scale > 1.0
        condition = self.encode_condition(prepared, labels, cfg)
        timings["condition"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        noise = self.prepare_latents(len(prepared), generator, latents)
        out = self.sample(condition, noise, num_inference_steps, guidance_scale,
                          zero_init_steps=(zero_steps + 1) if use_zero_init else 0, ctx=ctx)
        _sync(self._device)
        timings["sampling"] = time.perf_counter() - t0
        if output_type == "latent":
            return Step1X3DGeometryPipelineOutput(image=prepared, mesh=list(out), timings=timings)

        meshes: list[Any] = []
        details: list[MeshData | None] = []
        timings["decode"] = timings["extract"] = timings["cleanup"] = 0.0
        with self._placed(self.vae):
            for i in range(out.shape[0]):
                t0 = time.perf_counter()
                decoded = self.decode(out[i : i + 1])
                _sync(self._device)
                timings["decode"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                verts, faces = self.extract(decoded, bounds=bounds, octree_resolution=octree_resolution,
                                            mc_level=mc_level, ctx=ctx, close_shell=close_shell)
                timings["extract"] += time.perf_counter() - t0
                if len(faces) == 0:
                    raise PipelineError("the model produced no surface for this image (the field never crosses "
                                        "zero); try another seed or a cleaner cut-out", code="bad_mesh", retryable=True)
                if output_type == "np":
                    meshes.append((verts, faces))
                    continue
                t0 = time.perf_counter()
                mesh, detail = self._clean(verts, faces, max_facenum if do_reduce_face else 10**9,
                                           0.001 if do_remove_floater else 0.0, ctx, closed=close_shell)
                meshes.append(mesh)
                details.append(detail)
                timings["cleanup"] += time.perf_counter() - t0
        self.last_timings = timings
        return Step1X3DGeometryPipelineOutput(image=prepared, mesh=meshes, timings=timings, detail=details)

    @staticmethod
    def _clean(verts: np.ndarray, faces: np.ndarray, max_faces: int, min_fraction: float,
               ctx: JobContext | None, closed: bool = True) -> tuple[MeshData, MeshData | None]:
        from ...meshing.cleanup import clean_mesh_with_detail

        return clean_mesh_with_detail(verts, faces, max_faces=max_faces, min_fraction=min_fraction, ctx=ctx,
                                      closed=closed)

    def __call__(
        self,
        image: ImageInput | Sequence[ImageInput],
        label: Mapping[str, Any] | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 7.5,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        num_meshes_per_prompt: int = 1,
        foreground_ratio: float = 0.95,
        bounds: float = 1.05,
        mc_level: float = 0.0,
        octree_resolution: int = 384,
        output_type: str = "trimesh",
        do_remove_floater: bool = True,
        do_reduce_face: bool = True,
        do_shade_smooth: bool = True,
        max_facenum: int = 200_000,
        return_dict: bool = True,
        use_zero_init: bool = True,
        zero_steps: int = 0,
        ctx: JobContext | None = None,
    ) -> Step1X3DGeometryPipelineOutput | tuple[list[Any], list[Any]]:
        """Image(s) -> mesh(es). Upstream's arguments and defaults; ``output_type`` is ``"trimesh"``,
        ``"np"`` (raw vertices/faces), ``"mesh_data"`` (our MeshData) or ``"latent"``.

        ``label`` (Label model): ``{"symmetry": "asymmetry"|"x", "edge_type": "normal"|"smooth"|"sharp",
        "pose": "unknown"|"t-pose"|"a-pose"}``; absent keys take class 0, as upstream.

        Mesh extraction is upstream's: where the surface meets the sampling box (``bounds``) it is
        left open, face for face as upstream leaves it. The server's backend closes it instead.
        """
        given: list[ImageInput] = list(image) if isinstance(image, (list, tuple)) else [image]  # type: ignore[list-item]
        images = [img for img in given for _ in range(num_meshes_per_prompt)]
        if label is not None and self.label_encoder is None:
            label = None  # the base model has no label input; upstream ignores it too
        result = self.generate(
            images, labels=[label] * len(images) if label is not None else None,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, generator=generator,
            latents=latents, foreground_ratio=foreground_ratio, bounds=bounds, mc_level=mc_level,
            octree_resolution=octree_resolution, max_facenum=max_facenum, do_remove_floater=do_remove_floater,
            do_reduce_face=do_reduce_face, use_zero_init=use_zero_init, zero_steps=zero_steps,
            output_type="mesh_data" if output_type == "trimesh" else output_type, ctx=ctx, close_shell=False)
        if output_type == "trimesh":
            result.mesh = [to_trimesh(m, smooth=do_shade_smooth) for m in result.mesh]
        if not return_dict:
            return result.image, result.mesh
        return result


def to_trimesh(mesh: MeshData, smooth: bool = True) -> Any:
    """MeshData -> trimesh with upstream's plain white PBR material."""
    import trimesh

    out = trimesh.Trimesh(vertices=mesh.positions, faces=mesh.faces.astype(np.int64),
                          vertex_normals=mesh.normals if smooth else None, process=False)
    out.visual = trimesh.visual.TextureVisuals(
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=(255, 255, 255), metallicFactor=0.05,
                                                     roughnessFactor=1.0))
    return out


def octree_coarse(resolution: int) -> int:
    """Upstream's coarsest level: halve while at least 63 (384 -> 96, 256 -> 64, 512 -> 64)."""
    r = resolution
    while r // 2 >= 63:
        r //= 2
    return r


def _concrete(device: str | torch.device) -> torch.device:
    """``cuda`` -> ``cuda:N`` (the current device), so placement checks compare like with like."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return dev


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _tf32_matmul(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """TF32 matmuls for fp32 decoding on CUDA: fp32 range (no overflowing logits), tensor-core speed."""
    if device.type != "cuda" or not enabled:
        yield
        return
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous

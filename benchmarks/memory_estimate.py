"""Estimated peak GPU memory and FLOPs of the Step1X-3D stages at full size, with no GPU and no weights.

    python benchmarks/memory_estimate.py                  # full-size models, prints the tables (about 1 minute)
    python benchmarks/memory_estimate.py --markdown FILE  # also write them as markdown
    python benchmarks/memory_estimate.py --tiny           # tiny configs: checks the script quickly

ESTIMATES, NOT MEASUREMENTS. Every module is built at its published size on the meta device and
then given fake tensors (``torch._subclasses.fake_tensor``): shapes, dtypes and strides are real,
no parameter or activation memory is ever allocated (the process stays at a few hundred MB).
The server's own code then runs on them, sub-stage by sub-stage, as a job at default settings
runs it:

* geometry: ``Step1X3DGeometryPipeline.encode_condition`` (the CFG pair), ``.sample`` with two
  steps (the first is skipped, so exactly one batched [uncond, cond] transformer forward),
  ``.decode``, then ``LatentField`` (the decoder keys/values) and one ``LatentField.evaluate`` of
  the point batch the extractor hands it, with the chunk size ``decode_chunk_size`` picks for
  the card (its ``torch.cuda.mem_get_info`` call answered as the card would answer);
* texture: ``MultiViewSDXL.__call__`` with one denoising step: the reference VAE encode, the
  reference UNet pass, the geometry adapter, one UNet step on 6 views x CFG = 12 latents with
  the MV-Adapter and reference attention, and the VAE decode of the six views.

Two seams, both in this script: the pipelines run on the CPU device (fake CPU tensors), so
their moves between host and GPU are no-ops and the GPU residency of the weights is book-kept
from the placement calls the code makes (``Step1X3DGeometryPipeline._placed``,
``MultiViewSDXL.place``) and the documented policy (offload below 40 GB; otherwise everything
stays on the card); and the prompt embeddings are random tensors (the stage caches them after
the first job; the text encoders' weights are listed separately).

Memory: a ``TorchDispatchMode`` adds up the storage bytes of every tensor an op creates while it
is alive (weakref finalizers on the storages), rounded to the CUDA caching allocator's 512-byte
blocks. Peak activations = the largest live total in a sub-stage, including tensors carried in
from earlier sub-stages (condition tokens, cached reference states, adapter features).
Estimated peak = resident weights + peak activations. Not included: the CUDA context (about
0.5-1 GB, outside ``max_memory_allocated`` anyway), allocator fragmentation and cached-but-free
blocks, cuBLAS/cuDNN/attention workspaces and kernel-internal temporaries. Attention runs through
PyTorch's fused CPU SDPA kernel (no score matrix), as flash / memory-efficient attention does on
the GPU. The "budget" column adds a stated margin for all of that: 20% of the activations + 1 GiB.

FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention; 2 FLOPs per
multiply-add; elementwise work and norms are not counted). Predicted H200 time = FLOPs / (assumed
fraction of the dense peak): 989 TFLOP/s bf16/fp16 and 495 TFLOP/s TF32 (H200 SXM datasheet),
at 40% unless ``--efficiency`` says otherwise. A prediction from FLOPs alone, not a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import resource
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from benchmarks.full_size import (
    GEOMETRY_TRANSFORMERS,
    GEOMETRY_VAE,
    SDXL_SCHEDULER,
    SDXL_TEXT_ENCODERS,
    SDXL_UNET,
    SDXL_VAE,
)

GiB = 1024**3
CUDA_BLOCK = 512  # the caching allocator rounds every block up to 512 bytes

# Tiny structures: the same code paths in a second (the test and --tiny).
TINY_TRANSFORMER: dict[str, Any] = {
    "input_channels": 8, "width": 32, "layers": 1, "num_single_layers": 1, "num_heads": 2, "condition_dim": 64,
    "use_visual_condition": True, "visual_condition_dim": 64,
}
TINY_VAE: dict[str, Any] = {
    "use_downsample": True, "num_latents": 16, "embed_dim": 8, "point_feats": 3, "num_freqs": 8, "include_pi": False,
    "heads": 2, "width": 64, "num_encoder_layers": 1, "num_decoder_layers": 1, "use_ln_post": True, "qkv_bias": False,
}
TINY_DINO_SHAPES: dict[str, tuple[int, ...]] = {  # a checkpoint header for the shape-driven encoder config
    "dino_model.embeddings.cls_token": (1, 1, 64),
    "dino_model.embeddings.patch_embeddings.projection.weight": (64, 3, 14, 14),
    "dino_model.embeddings.position_embeddings": (1, 5, 64),
    "dino_model.embeddings.register_tokens": (1, 4, 64),
    "dino_model.encoder.layer.0.mlp.fc1.weight": (128, 64),
}
TINY_CLIP_SHAPES: dict[str, tuple[int, ...]] = {
    "clip_model.vision_model.embeddings.class_embedding": (64,),
    "clip_model.vision_model.embeddings.patch_embedding.weight": (64, 3, 14, 14),
    "clip_model.vision_model.embeddings.position_embedding.weight": (5, 64),
    "clip_model.vision_model.encoder.layers.0.mlp.fc1.weight": (128, 64),
    "clip_model.text_model.embeddings.token_embedding.weight": (40, 64),
    "clip_model.text_model.embeddings.position_embedding.weight": (8, 64),
    "clip_model.text_model.encoder.layers.0.mlp.fc1.weight": (128, 64),
    "clip_model.visual_projection.weight": (16, 64),
}
TINY_UNET: dict[str, Any] = {**SDXL_UNET, "block_out_channels": [16, 32, 32], "transformer_layers_per_block": [1, 1, 2],
                             "attention_head_dim": [2, 4, 4], "cross_attention_dim": 64, "addition_time_embed_dim": 8,
                             "projection_class_embeddings_input_dim": 80, "norm_num_groups": 8, "layers_per_block": 1}
TINY_SDXL_VAE: dict[str, Any] = {**SDXL_VAE, "block_out_channels": [8, 16, 16, 16], "norm_num_groups": 8,
                                 "layers_per_block": 1}
TINY_TEXT_ENCODERS: dict[str, dict[str, Any]] = {
    name: {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1,
           "max_position_embeddings": 77, "vocab_size": 100, "projection_dim": 32, "bos_token_id": 0,
           "eos_token_id": 2, "pad_token_id": 1}
    for name in SDXL_TEXT_ENCODERS
}

H200_BF16_TFLOPS = 989.4  # dense, H200 SXM datasheet (fp16 the same)
H200_TF32_TFLOPS = 494.7


@dataclass(frozen=True)
class Card:
    name: str
    total_bytes: int
    context_bytes: int = int(0.5 * GiB)  # what the CUDA context takes before any tensor


CARD_24GB = Card("24 GB card (e.g. RTX 4090: 24564 MiB)", 24564 * 1024**2)
CARD_H200 = Card("H200 (143771 MiB)", 143771 * 1024**2)


# --------------------------------------------------------------------------------------- tools
class LiveTensorMemory(TorchDispatchMode):
    """Live and peak bytes of the tensor storages that ops create while the mode is active.

    Every op output whose storage is new (not one of the op's inputs' storages, so views and
    in-place results count nothing) is added with its storage's byte size, rounded up to
    ``round_to``, and subtracted when the storage dies (a weakref finalizer). Works the same on
    real and on fake tensors. Tensors that existed before (weights, inputs) are not counted.
    """

    def __init__(self, round_to: int = 1) -> None:
        super().__init__()
        self.round_to = max(1, int(round_to))
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}

    def _bytes(self, storage: torch.UntypedStorage) -> int:
        n = int(storage.nbytes())
        return -(-n // self.round_to) * self.round_to

    def _release(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def reset_peak(self) -> None:
        self.peak = self.live

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {t.untyped_storage()._cdata for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage._cdata
            if key in self._sizes:  # a tracked storage that an op resized in place
                size = self._bytes(storage)
                self.live += size - self._sizes[key]
                self._sizes[key] = size
            elif key not in inputs:
                size = self._bytes(storage)
                self._sizes[key] = size
                self.live += size
                weakref.finalize(storage, self._release, key)
        self.peak = max(self.peak, self.live)
        return out


def _cpu_sdpa_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                    **kwargs: Any) -> int:
    return int(sdpa_flop_count(query_shape, key_shape, value_shape))


def flop_counter() -> FlopCounterMode:
    """``FlopCounterMode`` that also counts PyTorch's fused CPU attention kernel (the GPU ones it knows)."""
    aten = torch.ops.aten
    return FlopCounterMode(display=False, custom_mapping={aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops})


def build_module(build: Callable[[], nn.Module], dtype: torch.dtype, fake_mode: Any | None) -> nn.Module:
    """``build()`` in ``dtype``: with ``fake_mode``, on the meta device and then fake CPU tensors
    (nothing allocated); without, for real on the CPU (the tiny checks)."""
    if fake_mode is None:
        return build().to(dtype).eval().requires_grad_(False)
    with torch.device("meta"):
        module = build().to(dtype)
    with fake_mode:
        module.to_empty(device="cpu")
    return module.eval().requires_grad_(False)


def pin_in_place(module: nn.Module) -> nn.Module:
    """Make ``module.to(...)`` a no-op: the pipelines' host <-> GPU moves (fake tensors cannot be
    swapped by ``Module.to``; here everything stays on the CPU device and residency is book-kept)."""

    def to(*args: Any, **kwargs: Any) -> nn.Module:
        dtype = kwargs.get("dtype") or next((a for a in args if isinstance(a, torch.dtype)), None)
        if dtype is not None and any(p.dtype != dtype for p in module.parameters()):
            raise RuntimeError("memory_estimate: a pipeline changed a model's dtype; build it in that dtype instead")
        return module

    module.to = to  # type: ignore[method-assign]
    return module


def module_bytes(module: nn.Module | None, round_to: int = CUDA_BLOCK) -> int:
    if module is None:
        return 0
    seen: set[int] = set()
    total = 0
    for t in [*module.parameters(), *module.buffers()]:
        st = t.untyped_storage()
        if st._cdata not in seen:
            seen.add(st._cdata)
            total += -(-int(st.nbytes()) // round_to) * round_to
    return total


def module_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class Phase:
    name: str
    resident: int = 0  # weight bytes on the GPU during the sub-stage
    peak_live: int = 0  # activations: largest live total in the sub-stage (carried tensors included)
    flops: int = 0  # counted in one run of the sub-stage
    calls: float = 1.0  # runs per job at default settings
    tflops_peak: float = H200_BF16_TFLOPS  # the H200 peak that applies (TF32 for fp32 matmuls)
    note: str = ""

    @property
    def estimate(self) -> int:
        return self.resident + self.peak_live


@dataclass
class StageEstimate:
    stage: str  # "geometry" | "texture"
    title: str
    card: Card
    settings: str
    dtype: str = ""
    phases: list[Phase] = field(default_factory=list)
    weights: dict[str, int] = field(default_factory=dict)  # component -> bytes in its run dtype
    params: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def peak(self) -> Phase:
        return max(self.phases, key=lambda p: p.estimate)


class Recorder:
    """Splits one run into sub-stages: peak live bytes and FLOPs per sub-stage, plus the weights on
    the GPU according to the placement calls the pipeline makes and the offload policy."""

    def __init__(self, memory: LiveTensorMemory, flops: FlopCounterMode, modules: dict[str, nn.Module | None],
                 offload: bool, steady_on_device: Sequence[str]) -> None:
        self.memory, self.flops, self.modules, self.offload = memory, flops, modules, offload
        self.on_device: set[str] = set(steady_on_device)  # what sits on the GPU before the job starts
        self.phases: list[Phase] = []
        self._current: Phase | None = None
        self._flops0 = 0

    def _resident(self) -> int:
        return sum(module_bytes(self.modules[name]) for name in self.on_device)

    def begin(self, name: str, calls: float = 1.0, tflops_peak: float = H200_BF16_TFLOPS, note: str = "") -> None:
        self.end()
        self.memory.reset_peak()
        self._flops0 = self.flops.get_total_flops()
        self._current = Phase(name, resident=self._resident(), calls=calls, tflops_peak=tflops_peak, note=note)

    def placed(self, *modules: nn.Module | None) -> None:
        """The pipeline asked for ``modules`` on the GPU: with offload only they are there, else all so far."""
        names = {name for name, m in self.modules.items() if m is not None and any(m is w for w in modules)}
        self.on_device = names if self.offload else self.on_device | names
        if self._current is not None:
            self._current.resident = max(self._current.resident, self._resident())

    def released(self) -> None:
        if self.offload:
            self.on_device = set()

    def end(self) -> None:
        if self._current is not None:
            self._current.peak_live = max(self.memory.peak, self._current.peak_live)
            self._current.flops = self.flops.get_total_flops() - self._flops0
            self.phases.append(self._current)
            self._current = None


@contextlib.contextmanager
def tracking(round_to: int = CUDA_BLOCK) -> Iterator[tuple[LiveTensorMemory, FlopCounterMode]]:
    counter = flop_counter()
    memory = LiveTensorMemory(round_to)
    with counter, memory:
        yield memory, counter


# ------------------------------------------------------------------------------------ geometry
def geometry_builders(model: str, tiny: bool) -> dict[str, Callable[[], nn.Module]]:
    from inference_server.neural.geometry.configs import (
        LabelEncoderConfig,
        ShapeVAEConfig,
        TransformerConfig,
        VisualEncoderConfig,
    )
    from inference_server.neural.geometry.models.condition import (
        ImageConditionEncoder,
        LabelEncoder,
    )
    from inference_server.neural.geometry.models.transformer import Step1X3DTransformer
    from inference_server.neural.geometry.models.vae import ShapeVAE

    label = model == "label"
    t_cfg = dict(TINY_TRANSFORMER if tiny else GEOMETRY_TRANSFORMERS[model])
    if tiny and label:
        t_cfg.update(use_label_condition=True, label_condition_dim=64)
    vae_cfg = TINY_VAE if tiny else GEOMETRY_VAE
    shapes = ({**TINY_DINO_SHAPES, **(TINY_CLIP_SHAPES if label else {})}) if tiny else None
    vis_cfg = VisualEncoderConfig(image_size=28 if tiny else 518)
    builders: dict[str, Callable[[], nn.Module]] = {
        "visual_encoder": lambda: _as_loaded(ImageConditionEncoder(vis_cfg, shapes, with_clip=label)),
        "transformer": lambda: Step1X3DTransformer(TransformerConfig(**t_cfg)),
        "vae": lambda: ShapeVAE(ShapeVAEConfig(**vae_cfg)),
    }
    if label:
        builders["label_encoder"] = lambda: LabelEncoder(LabelEncoderConfig(hidden_size=64 if tiny else 1024))
    return builders


def _as_loaded(encoder: nn.Module) -> nn.Module:
    """The encoder as the loader leaves it: without the parts it never runs (CLIP's text tower)."""
    encoder.drop_unused()  # type: ignore[operator]
    return encoder


def field_chunk(card: Card, vae_dtype: torch.dtype, width: int, used_bytes: int) -> int:
    """The decoder chunk ``decode_chunk_size`` picks on ``card`` with ``used_bytes`` allocated (its
    ``torch.cuda.mem_get_info`` answered with the card's free memory; cached-but-free allocator
    blocks are assumed released, which gives the largest chunk and so the largest peak)."""
    from inference_server.neural.geometry.surface import decode_chunk_size

    free = max(0, card.total_bytes - card.context_bytes - used_bytes)
    with mock.patch.object(torch.cuda, "mem_get_info", return_value=(free, card.total_bytes)):
        return int(decode_chunk_size(torch.device("cuda"), vae_dtype, width))


def estimate_geometry(*args: Any, **kwargs: Any) -> StageEstimate:
    """One geometry job's sub-stages (see :func:`_estimate_geometry`); the global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _estimate_geometry(*args, **kwargs)


def _estimate_geometry(model: str = "base", dtype: torch.dtype = torch.bfloat16, card: Card = CARD_24GB, *,
                      vae_dtype: torch.dtype = torch.float32, tiny: bool = False, fake: bool = True,
                      steps: int = 50, guidance: float = 7.5, round_to: int = CUDA_BLOCK,
                      extractor_points: int | None = None, chunk: int | None = None, batch: int | None = None
                      ) -> StageEstimate:
    """One geometry job's sub-stages on ``card`` at default settings (see the module docstring).

    ``chunk``/``batch`` override the decoder chunk and the extractor batch (tests on real tensors)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from torch._subclasses.fake_tensor import FakeTensorMode

    from inference_server.neural.backend import OFFLOAD_BELOW_BYTES
    from inference_server.neural.geometry.pipeline import Step1X3DGeometryPipeline
    from inference_server.neural.geometry.preprocess import condition_image
    from inference_server.neural.geometry.surface import LatentField

    fake_mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else None
    builders = geometry_builders(model, tiny)
    modules: dict[str, nn.Module | None] = {
        name: build_module(build, vae_dtype if name == "vae" else dtype, fake_mode) for name, build in builders.items()
    }
    modules.setdefault("label_encoder", None)
    for module in modules.values():
        if module is not None:
            pin_in_place(module)
    pipe = Step1X3DGeometryPipeline(modules["transformer"], modules["vae"], modules["visual_encoder"],  # type: ignore[arg-type]
                                    FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000),
                                    modules["label_encoder"])  # type: ignore[arg-type]
    offload = card.total_bytes < OFFLOAD_BELOW_BYTES  # the backend's offload="auto"
    est = StageEstimate(
        "geometry", f"Geometry, {model} model", card,
        f"{str(dtype).removeprefix('torch.')} transformer/encoders, {str(vae_dtype).removeprefix('torch.')} VAE, "
        f"{steps} steps, CFG {guidance}, octree 384, offload {'stages' if offload else 'none'} (auto)")
    est.dtype = str(dtype).removeprefix("torch.")
    est.weights = {name: module_bytes(m) for name, m in modules.items() if m is not None}
    est.params = {name: module_params(m) for name, m in modules.items() if m is not None}
    vae_peak = H200_TF32_TFLOPS if vae_dtype == torch.float32 else H200_BF16_TFLOPS

    image = np.zeros((600, 400, 4), np.uint8)
    image[100:500, 80:320] = (200, 120, 60, 255)
    prepared = [condition_image(image, 0.95)]
    labels = [{"symmetry": "x", "edge_type": "sharp"}] if model == "label" else None
    vae = pipe.vae

    with tracking(round_to) as (memory, counter):
        rec = Recorder(memory, counter, modules, offload, [] if offload else list(modules))
        original_placed = pipe._placed

        @contextlib.contextmanager
        def placed(*wanted: nn.Module | None) -> Iterator[None]:
            rec.placed(*wanted)
            with original_placed(*wanted):
                yield
            rec.released()

        pipe._placed = placed  # type: ignore[method-assign]
        with torch.no_grad():
            rec.begin("condition encoding (image encoders, CFG pair)")
            condition = pipe.encode_condition(prepared, labels, guidance > 1.0)
            rec.begin("sampling step: one transformer forward on the CFG pair (batch 2)", calls=steps - 1,
                      note=f"{steps - 1} of the {steps} steps; the first needs none")
            noise = pipe.prepare_latents(1, None)
            latents = pipe.sample(condition, noise, 2, guidance)  # step 1 skipped: exactly one forward
            with pipe._placed(vae):
                rec.begin("VAE: latent set decode + field keys/values", tflops_peak=vae_peak)
                decoded = pipe.decode(latents)
                used = rec._resident() + memory.live
                chunk = chunk or field_chunk(card, vae_dtype, vae.config.width, used)
                latent_field = LatentField(vae, decoded, chunk)
                batch = batch or max(chunk, 262_144)  # what Step1X3DGeometryPipeline.extract hands the extractor
                calls = (extractor_points or batch) / batch
                rec.begin(f"field query: one extractor batch of {batch:,} points (chunk {chunk:,})",
                          calls=calls, tflops_peak=vae_peak,
                          note=f"{extractor_points or batch:,} points per job" if extractor_points else "")
                points = vae.decoder.query_proj.weight.new_empty((batch, 3), dtype=torch.float32)
                values = latent_field.evaluate(points)
            rec.end()
        del condition, latents, decoded, values, points
    est.phases = rec.phases
    est.extra.update(chunk=chunk, batch=batch, offload=offload, extractor_points=extractor_points)
    return est


def sphere_extractor_points(octree: int = 384) -> int:
    """Points the hierarchical extractor evaluates for a sphere of radius 0.8 (the benchmark's
    stand-in for a typical object) at ``octree``: runs the real extractor on the analytic field."""
    from inference_server.meshing.extract import extract_surface
    from inference_server.neural.geometry.pipeline import UPSTREAM_BAND, octree_coarse

    count = [0]

    def sphere(points: np.ndarray) -> np.ndarray:
        count[0] += len(points)
        return ((0.8 - np.linalg.norm(points, axis=1)) * 10.0).astype(np.float32)

    extract_surface(sphere, bounds=1.05, resolution=octree, coarse_resolution=octree_coarse(octree),
                    band=UPSTREAM_BAND, batch_size=262_144)
    return count[0]


# ------------------------------------------------------------------------------------- texture
def _text_encoder(name: str, config: dict[str, Any]) -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(**config, hidden_act="gelu" if name == "text_encoder_2" else "quick_gelu")
    return CLIPTextModelWithProjection(cfg) if name == "text_encoder_2" else CLIPTextModel(cfg)


def estimate_texture(*args: Any, **kwargs: Any) -> StageEstimate:
    """One texture job's diffusion (see :func:`_estimate_texture`); the global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _estimate_texture(*args, **kwargs)


def _estimate_texture(dtype: torch.dtype = torch.bfloat16, card: Card = CARD_H200, *, tiny: bool = False,
                     fake: bool = True, steps: int = 50, guidance: float = 3.0, round_to: int = CUDA_BLOCK
                     ) -> StageEstimate:
    """One texture job's multi-view diffusion on ``card`` at default settings (see the module docstring)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch._subclasses.fake_tensor import FakeTensorMode

    from inference_server.neural.texture.loading import TextureModels
    from inference_server.neural.texture.models import (
        build_geometry_adapter,
        install_mv_processors,
    )
    from inference_server.neural.texture.pipelines.multiview_sdxl import (
        MultiViewSDXL,
        PromptEmbeds,
    )
    from inference_server.neural.texture.scheduler import make_shifted_ddpm
    from inference_server.neural.texture.stage import STAGED_OFFLOAD_BELOW_BYTES

    fake_mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else None
    unet_cfg, vae_cfg = (TINY_UNET, TINY_SDXL_VAE) if tiny else (SDXL_UNET, SDXL_VAE)
    resolution = 64 if tiny else 768

    def unet_with_adapter() -> nn.Module:
        unet = UNet2DConditionModel(**unet_cfg)
        install_mv_processors(unet)
        return unet

    unet = build_module(unet_with_adapter, dtype, fake_mode)
    cond_encoder = build_module(lambda: build_geometry_adapter(unet.config), dtype, fake_mode)
    vae = build_module(lambda: AutoencoderKL(**vae_cfg), dtype, fake_mode)
    text = {name: build_module(lambda n=name, c=cfg: _text_encoder(n, c), dtype, fake_mode)  # type: ignore[misc]
            for name, cfg in (TINY_TEXT_ENCODERS if tiny else SDXL_TEXT_ENCODERS).items()}
    modules: dict[str, nn.Module | None] = {"unet": unet, "cond_encoder": cond_encoder, "vae": vae}
    staged = card.total_bytes < STAGED_OFFLOAD_BELOW_BYTES  # TextureConfig(offload="auto")
    est = StageEstimate(
        "texture", "Texture (SDXL + MV-Adapter + geometry adapter)", card,
        f"{str(dtype).removeprefix('torch.')}, {resolution}x{resolution}, 6 views, {steps} steps, CFG {guidance}, "
        f"offload {'stages' if staged else 'none'} (auto)")
    est.dtype = str(dtype).removeprefix("torch.")
    est.weights = {name: module_bytes(m) for name, m in {**modules, **text}.items() if m is not None}
    est.params = {name: module_params(m) for name, m in {**modules, **text}.items() if m is not None}
    est.params["adapter (ig2v file)"] = (sum(p.numel() for n, p in unet.named_parameters() if ".processor." in n)
                                         + module_params(cond_encoder))
    width = unet.config.cross_attention_dim
    pooled = TINY_TEXT_ENCODERS["text_encoder_2"]["projection_dim"] if tiny else 1280

    models = TextureModels(unet=unet, cond_encoder=cond_encoder, vae=vae, text_encoder=None,  # type: ignore[arg-type]
                           text_encoder_2=None, tokenizer=None, tokenizer_2=None,  # type: ignore[arg-type]
                           scheduler=make_shifted_ddpm(SDXL_SCHEDULER))
    for module in (unet, cond_encoder, vae, *text.values()):
        pin_in_place(module)
    pipe = MultiViewSDXL(models, "cpu", dtype, staged=staged)
    g = torch.Generator().manual_seed(0)
    pipe.set_prompt_embeds(PromptEmbeds(torch.randn(1, 77, width, generator=g), torch.randn(1, 77, width, generator=g),
                                        torch.randn(1, pooled, generator=g), torch.randn(1, pooled, generator=g)))
    reference = np.full((resolution, resolution, 3), 128, np.uint8)
    control = torch.rand(6, 6, resolution, resolution, generator=g)

    with tracking(round_to) as (memory, counter):
        # Steady state: with offload "none" the models stay on the card from the first job on.
        rec = Recorder(memory, counter, {**modules, **text}, staged, [] if staged else list(modules))
        original_place = pipe.place
        unet_calls = [0]

        def place(*wanted: nn.Module) -> None:
            if any(w is vae for w in wanted):
                rec.begin("VAE decode, 6 views one at a time" if unet_calls[0] else "VAE encode of the reference")
            else:
                rec.begin("reference pass (UNet, 1 latent, t = 0, caches 70 layers' inputs)")
            original_place(*wanted)
            rec.placed(*wanted)

        def unet_pre(module: nn.Module, args: Any) -> None:
            unet_calls[0] += 1
            if unet_calls[0] == 2:
                rec.begin("UNet step: 6 views x CFG = 12 latents, MV + reference attention", calls=steps)

        pipe.place = place  # type: ignore[method-assign]
        hooks = [unet.register_forward_pre_hook(unet_pre),
                 cond_encoder.register_forward_pre_hook(lambda m, a: rec.begin("geometry adapter (6 views)"))]
        try:
            images = pipe(reference, control, num_inference_steps=1, guidance_scale=guidance, generator=g)
        finally:
            for hook in hooks:
                hook.remove()
        rec.end()
        # First job only: the text encoders (the prompt embeddings are cached afterwards), run the way
        # encode_prompt runs them (negative, then positive prompt; 77 tokens).
        rec.end()
        rec.on_device = set()  # the first job: no texture model is on the card yet when the prompts are encoded
        rec.begin("text encoders, first job only (prompts cached afterwards)", calls=0)
        rec.placed(*text.values())
        with torch.inference_mode():
            ids = torch.zeros(1, 77, dtype=torch.long)
            hidden = [text[name](ids, output_hidden_states=True).hidden_states[-2] for name in text for _ in range(2)]
        rec.end()
        del images, hidden
    est.phases = rec.phases
    est.extra.update(staged=staged)
    return est


# --------------------------------------------------------------------------------------- report
TEXTURE_TARGET_BYTES = 20 * 10**9  # issue 7: "under 20 GB peak" (read as 10^9 bytes: the stricter reading)


def _gib(n: float) -> str:
    return f"{n / GiB:.2f}"


def margin(phase: Phase) -> float:
    """The stated margin: 20% of the activations (fragmentation, cached blocks) + 1 GiB (CUDA context,
    cuBLAS/cuDNN/attention workspaces)."""
    return 0.2 * phase.peak_live + 1.0 * GiB


def predicted_seconds(phase: Phase, efficiency: float) -> float:
    return phase.flops * phase.calls / (phase.tflops_peak * 1e12 * efficiency)


def stage_seconds(est: StageEstimate, efficiency: float) -> float:
    return sum(predicted_seconds(p, efficiency) for p in est.phases)


def _runs(calls: float) -> str:
    return f"{int(calls)}" if calls == int(calls) else f"{calls:.1f}"


def table(est: StageEstimate, efficiency: float) -> list[str]:
    lines = [f"### {est.title}, {est.card.name}", "", f"Settings: {est.settings}.", "",
             ("| sub-stage | resident weights (GiB) | peak activations (GiB) | estimated peak (GiB) "
             "| + margin (GiB) | GFLOP per run | runs per job | predicted H200 s per job |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in est.phases:
        name = p.name + (f" ({p.note})" if p.note else "")
        lines.append(f"| {name} | {_gib(p.resident)} | {_gib(p.peak_live)} | {_gib(p.estimate)} "
                     f"| {_gib(p.estimate + margin(p))} | {p.flops / 1e9:,.0f} | {_runs(p.calls)} "
                     f"| {predicted_seconds(p, efficiency):.3f} |")
    peak = est.peak
    lines += ["", (f"Peak: **{_gib(peak.estimate)} GiB** estimated ({_gib(peak.estimate + margin(peak))} GiB with the "
              f"margin) in \"{peak.name}\". Predicted H200 time of the counted GPU work: "
              f"**{stage_seconds(est, efficiency):.1f} s** at {efficiency:.0%} of the dense peak."), ""]
    return lines


def summary(estimates: Sequence[StageEstimate], efficiency: float) -> list[str]:
    """Geometry against the 24 GB card (issue 6), texture against 20 GB on the H200 (issue 7)."""
    lines = [("| stage | card (offload auto) | dtype | estimated peak (GiB) | + margin (GiB) | target | headroom "
             "after the margin (GiB) | predicted H200 s (counted GPU work) |"), "|---|---|---|---:|---:|---|---:|---:|"]
    geometry_h200 = {e.title: e for e in estimates if e.stage == "geometry" and e.card is CARD_H200}
    for est in estimates:
        peak = est.peak
        budget = peak.estimate + margin(peak)
        offload = "stages" if est.extra.get("offload") or est.extra.get("staged") else "none"
        card = f"{est.card.name.split(' (')[0]} ({offload})"
        if est.stage == "geometry":
            target = (f"fits {est.card.total_bytes / GiB:.2f} GiB", float(est.card.total_bytes))
        elif est.card is CARD_H200:
            target = ("< 20 GB = 18.63 GiB", float(TEXTURE_TARGET_BYTES))
        else:
            target = (f"fits {est.card.total_bytes / GiB:.2f} GiB", float(est.card.total_bytes))
        lines.append(f"| {est.title} | {card} | {est.dtype} | {_gib(peak.estimate)} | {_gib(budget)} | {target[0]} "
                     f"| {_gib(target[1] - budget)} | {stage_seconds(est, efficiency):.1f} |")
        if est.stage == "texture" and est.card is CARD_H200:
            # A full job on a card >= 40 GB: geometry never offloads, so its models stay resident
            # while the texture stage runs (bf16 and fp16 weights have the same size).
            for title, geo in geometry_h200.items():
                extra = sum(geo.weights.values())
                lines.append(f"| {est.title} in a full job, {title.split(', ')[1]} weights still resident | {card} "
                             f"| {est.dtype} | {_gib(peak.estimate + extra)} | {_gib(budget + extra)} | {target[0]} "
                             f"| {_gib(target[1] - budget - extra)} | - |")
    return lines


COMPONENT_NAMES = {
    "unet": "UNet (SDXL) incl. the MV-Adapter processors", "cond_encoder": "geometry adapter (T2I, 6 channels)",
    "text_encoder": "text encoder 1 (CLIP ViT-L/14 text)", "text_encoder_2": "text encoder 2 (OpenCLIP bigG text)",
}


def weights_table(estimates: Sequence[StageEstimate]) -> list[str]:
    lines = ["| component | parameters | GiB in the run dtype |", "|---|---:|---:|"]
    seen: set[str] = set()
    for est in estimates:
        for name, n in est.params.items():
            key = f"{est.title}: {COMPONENT_NAMES.get(name, name) if est.stage == 'texture' else name}"
            if key in seen:
                continue
            seen.add(key)
            size = est.weights.get(name)
            where = f"{_gib(size)} ({est.dtype if name != 'vae' or est.stage != 'geometry' else 'float32'})" \
                if size is not None else "(part of the UNet and adapter rows)"
            lines.append(f"| {key} | {n:,} | {where} |")
    return lines


def run_all(tiny: bool) -> tuple[list[StageEstimate], int | None]:
    points = None if tiny else sphere_extractor_points(384)
    estimates: list[StageEstimate] = []
    for model in ("base", "label"):
        for dtype in (torch.bfloat16, torch.float16):
            estimates.append(estimate_geometry(model, dtype, CARD_24GB, tiny=tiny, extractor_points=points))
        estimates.append(estimate_geometry(model, torch.bfloat16, CARD_H200, tiny=tiny, extractor_points=points))
    for dtype in (torch.bfloat16, torch.float16):
        estimates.append(estimate_texture(dtype, CARD_H200, tiny=tiny))
    estimates.append(estimate_texture(torch.bfloat16, CARD_24GB, tiny=tiny))
    return estimates, points


def report(estimates: Sequence[StageEstimate], points: int | None, efficiency: float, tiny: bool) -> str:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [(f"Date {datetime.date.today().isoformat()}, torch {torch.__version__}, "
             f"{'TINY configs (a script check, not an estimate)' if tiny else 'full-size models on fake tensors'}; "
             f"peak RSS of the whole process {rss:,.0f} MiB (nothing of the models was allocated)."), "",
             ("ESTIMATES, not measurements: peak = resident weights + peak live tensors (512-byte blocks); "
             "margin = 20% of the activations + 1 GiB; time = counted FLOPs at "
             f"{efficiency:.0%} of the H200's dense peak ({H200_BF16_TFLOPS:g} TFLOP/s bf16/fp16, "
             f"{H200_TF32_TFLOPS:g} TF32 for the fp32 VAE)."), "",
             "## Summary", ""]
    lines += summary(estimates, efficiency) + ["", "## Sub-stages", ""]
    for est in estimates:
        lines += table(est, efficiency)
    lines += ["## Predicted H200 time from FLOPs alone", "",
              ("Counted GPU work per job (matmuls, convolutions, attention) divided by an assumed fraction of the "
              "dense peak. Not included: CPU work (geometry: extraction and mesh clean-up; texture: renders, "
              "bake, hole filling, PBR maps), memory-bound elementwise kernels, launch overheads, host-device copies."),
              "", "| stage | card | main loop | TFLOP per job | s at 25% | s at 40% | s at 60% |",
              "|---|---|---|---:|---:|---:|---:|"]
    for est in estimates:
        if est.card is not CARD_H200:
            continue
        loop = next(p for p in est.phases if p.calls > 1 and not p.name.startswith("field"))
        total = sum(p.flops * p.calls for p in est.phases)
        at = [stage_seconds(est, e) for e in (0.25, 0.4, 0.6)]
        lines.append(f"| {est.title} ({est.dtype}) | {est.card.name.split(' (')[0]} | {_runs(loop.calls)} x "
                     f"{loop.flops / 1e12:.2f} TFLOP = {loop.flops * loop.calls / 1e12:,.0f} TFLOP "
                     f"({predicted_seconds(loop, efficiency):.2f} s at {efficiency:.0%}) | {total / 1e12:,.0f} "
                     f"| {at[0]:.1f} | {at[1]:.1f} | {at[2]:.1f} |")
    lines.append("")
    if points:
        lines += [(f"Field queries per job: {points:,} points, what the hierarchical extractor evaluates at octree "
                  "384 for a sphere of radius 0.8 (benchmarks/geometry.py's stand-in shape)."), ""]
    lines += ["## Weights", ""] + weights_table(estimates)
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--efficiency", type=float, default=0.4, help="assumed fraction of the H200 dense peak (0.4)")
    p.add_argument("--tiny", action="store_true", help="tiny configs (checks the script in seconds)")
    p.add_argument("--markdown", type=Path, help="also write the tables here")
    args = p.parse_args()
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # "modules that should be kept in float32: []" per dtype cast
    estimates, points = run_all(args.tiny)
    text = report(estimates, points, args.efficiency, args.tiny)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

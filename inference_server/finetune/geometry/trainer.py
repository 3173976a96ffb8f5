"""``step1x3d finetune geometry``: a LoRA for the flow transformer, on one process or under torchrun.

LoRA (PEFT) on the targets upstream's ``use_lora`` uses: every attention projection of the
double- and single-stream blocks and both feed-forwards of the double-stream blocks
(``attn.to_q/k/v``, ``attn.to_out.0``, ``attn.add_q/k/v_proj``, ``attn.to_add_out``,
``ff.net.0.proj``, ``ff.net.2``, ``ff_context.net.0.proj``, ``ff_context.net.2``), Gaussian
initialisation (B = 0: the untrained LoRA is the base model). AdamW over the LoRA parameters
only; optional bf16 autocast, gradient checkpointing per transformer block and gradient
accumulation. The objective is in ``objective``; all randomness is per sample (``seeding``),
so the result does not depend on the number of processes.

Data order: an epoch is a seeded permutation of the training objects (``DistributedSampler``
with the run's seed); optimizer step ``k`` uses the ``k``-th block of ``batch`` objects of it,
each rank taking its shard. ``validation_holdout`` keeps objects out of training (``finetune.split``);
at each checkpoint their loss on fixed draws goes into ``loss.csv`` and they fill the validation
sheet. Only rank 0 writes (checkpoints, ``loss.csv``, ``loss.png``, the sheets, the LoRA); every
rank waits at each checkpoint until it is on disk, so a failure's resume point is always written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from ..config import ConfigError, TrainConfig, load_config, to_plain
from ..distributed import DistContext, check_world, split_batch
from ..failure import TrainError
from .. import peftlora
from ..lorafile import save_lora
from ..peftlora import inject_lora
from ..prepcache import PrepError
from ..run import Hooks, RunResult, Schedule, autocast, in_process_group, open_outputs, resume, train_loop, wrap_for_ddp
from ..seeding import seed_everything
from ..split import Split, training_split
from .data import PreparedSet, draw_sample
from .objective import FlowTable, flow_loss, noisy_latents

UPSTREAM_LORA_TARGETS: tuple[str, ...] = (
    "attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0",
    "attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out",
    "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
)
COMPONENT = "transformer"  # key prefix in the LoRA file (diffusers' layout)


@dataclass
class GeometryTrainConfig(TrainConfig):
    condition_dropout: float = 0.1  # upstream visual_condition.empty_embeds_ratio
    logit_mean: float = 0.0
    logit_std: float = 1.0
    precondition_outputs: bool = True  # upstream's default
    sample_posterior: bool = True  # upstream draws z from the VAE posterior every step
    validation_octree: int = 128

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ConfigError(f"condition_dropout must be in [0, 1), got {self.condition_dropout}")
        if not self.logit_std > 0:
            raise ConfigError("logit_std must be positive")
        if not 16 <= self.validation_octree <= 512:
            raise ConfigError(f"validation_octree must be 16-512, got {self.validation_octree}")


GEOMETRY_KEYS: dict[str, tuple[str, Any]] = {
    "system.visual_condition.empty_embeds_ratio": ("condition_dropout", float),
    "system.logit_mean": ("logit_mean", float),
    "system.logit_std": ("logit_std", float),
    "system.precondition_outputs": ("precondition_outputs", bool),
}


def load_geometry_config(path: Path | None, **overrides: Any) -> GeometryTrainConfig:
    return load_config(GeometryTrainConfig, path, GEOMETRY_KEYS, **overrides)


# -- model ------------------------------------------------------------------------------------------
def _dit(transformer: nn.Module) -> nn.Module:
    dit: Any = transformer.dit_model  # the diffusers-style module the LoRA targets are named in
    return dit


def add_lora(transformer: nn.Module, cfg: TrainConfig) -> list[str]:
    """Inject PEFT LoRA layers into ``transformer.dit_model``; returns the target module names."""
    return inject_lora(_dit(transformer), cfg.lora_layers or UPSTREAM_LORA_TARGETS, cfg, "transformer")


def lora_state(transformer: nn.Module) -> dict[str, torch.Tensor]:
    return peftlora.lora_state(_dit(transformer))


def load_lora_state(transformer: nn.Module, state: dict[str, torch.Tensor]) -> None:
    peftlora.load_lora_state(_dit(transformer), state)


def enable_gradient_checkpointing(transformer: nn.Module) -> None:
    """Recompute each transformer block in the backward pass instead of keeping its activations."""
    from torch.utils.checkpoint import checkpoint

    dit: Any = transformer.dit_model
    for block in [*dit.transformer_blocks, *dit.single_transformer_blocks]:
        inner = block.forward

        def forward(*args: Any, _inner: Callable[..., Any] = inner) -> Any:
            if torch.is_grad_enabled():
                return checkpoint(_inner, *args, use_reentrant=False)
            return _inner(*args)

        block.forward = forward  # type: ignore[method-assign]


def load_base(model_dir: Path, dtype: torch.dtype) -> tuple[nn.Module, Any, torch.Tensor | None]:
    """(transformer, training scheduler, unconditional label tokens or None) from the official layout."""
    from ...neural.geometry.configs import LabelEncoderConfig, TransformerConfig, config_from_dict, read_config
    from ...neural.geometry.loader import build_empty, component_files, load_scheduler, load_weights
    from ...neural.geometry.models.condition import LabelEncoder
    from ...neural.geometry.models.transformer import Step1X3DTransformer

    cfg_path, weights = component_files(model_dir, "transformer")
    t_cfg = config_from_dict(TransformerConfig, read_config(cfg_path))
    transformer = load_weights(build_empty(Step1X3DTransformer, t_cfg, config_path=cfg_path), weights, dtype)
    label = None
    if t_cfg.use_label_condition:
        l_path, l_weights = component_files(model_dir, "label_encoder")
        l_cfg = config_from_dict(LabelEncoderConfig, read_config(l_path))
        encoder = load_weights(build_empty(LabelEncoder, l_cfg, config_path=l_path), l_weights, torch.float32)
        with torch.no_grad():
            label = encoder.unconditional(1).float()  # the data has no labels: the empty label, as upstream
    return transformer, load_scheduler(model_dir), label


def vae_scale(model_dir: Path) -> float:
    from ...neural.geometry.configs import ShapeVAEConfig, config_from_dict, read_config

    return float(config_from_dict(ShapeVAEConfig, read_config(model_dir / "vae" / "config.json")).z_scale_factor)


# -- the run ------------------------------------------------------------------------------------------
def evaluate_loss(transformer: nn.Module, data: PreparedSet, cfg: "GeometryTrainConfig", table: FlowTable,
                  z_scale: float, label: torch.Tensor | None, device: torch.device, draws: int = 4,
                  indices: Sequence[int] | None = None) -> float:
    """The objective on fixed draws (each of ``indices`` (default: every object) x ``draws`` noise/timestep
    draws, no dropout): a deterministic measure of fit, unlike the training loss whose timesteps change
    every step. The validation loss of a run with held-out objects is this over them."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in (range(len(data)) if indices is None else indices):
            moments, visual = data.load(i)
            for k in range(draws):
                d = draw_sample(moments, visual, seed=cfg.seed, step=k, index=i, dropout=0.0,
                                sample_posterior=cfg.sample_posterior, z_scale_factor=z_scale, stream=1)
                t, sigma = table.lookup(d.normal[None], cfg.logit_mean, cfg.logit_std)
                z, eps = d.z[None].to(device), d.eps[None].to(device)
                x_t = noisy_latents(z, eps, sigma.to(device))
                lab = label.to(device) if label is not None else None
                with autocast(cfg, device):
                    v = transformer(x_t, t.to(device), visual=d.visual[None].to(device), label=lab)
                total += float(flow_loss(v, z, eps, x_t, sigma.to(device), cfg.precondition_outputs).sum())
                count += 1
    return total / max(count, 1)


def train_geometry(cfg: GeometryTrainConfig, *, stream: TextIO = sys.stderr,
                   on_step: Callable[[int, float], None] | None = None) -> RunResult:
    """Run (or resume) a geometry LoRA training; returns the LoRA file (rank 0's view)."""
    for name in ("base", "data", "out"):
        if not getattr(cfg, name):
            raise ConfigError(f"--{name} is required (or '{name}:' in the config file)")
    return in_process_group(cfg.device, lambda ctx: _train(cfg, ctx, stream, on_step))


def make_split(data: PreparedSet, cfg: GeometryTrainConfig) -> Split:
    """The run's held-out split of ``data`` (every object trains without ``validation_holdout``)."""
    return training_split([o["source"] for o in data.objects], cfg.validation_holdout, cfg.seed, cfg.batch)


def _train(cfg: GeometryTrainConfig, ctx: DistContext, stream: TextIO,
           on_step: Callable[[int, float], None] | None) -> RunResult:
    from ...neural.geometry.loader import resolve_model_dir
    from .prepare import model_digest

    check_world(cfg.expected_world_size, ctx.world_size, cfg.num_nodes, cfg.gpus_per_node)
    micro = split_batch(cfg.batch, ctx.world_size, cfg.grad_accum)
    out = Path(cfg.out).expanduser()  # type: ignore[arg-type]
    model_dir = resolve_model_dir(Path(cfg.base).expanduser())  # type: ignore[arg-type]
    data = PreparedSet(Path(cfg.data).expanduser())  # type: ignore[arg-type]
    if data.params.get("model_digest") != model_digest(model_dir):
        raise PrepError(f"{cfg.data} was prepared for another base model ({data.params.get('model')}); run "
                        f"'step1x3d finetune prepare' again with --base {cfg.base}")
    split = make_split(data, cfg)
    schedule = Schedule(len(split.train), cfg.batch, ctx, cfg.seed, ids=split.train)

    base_dtype = torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float32
    transformer, scheduler, label = load_base(model_dir, base_dtype)
    table = FlowTable.from_scheduler(scheduler)
    z_scale = vae_scale(model_dir)
    seed_everything(cfg.seed)  # identical LoRA initialisation on every rank
    targets = add_lora(transformer, cfg)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(transformer)
    transformer.to(ctx.device)
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)

    split_info = split.describe()
    start = resume(out, cfg, lambda state: load_lora_state(transformer, state), optimizer, ctx, stream,
                   expect={"split": json.dumps(split_info)})
    model = wrap_for_ddp(transformer, ctx)

    sheet = None
    if ctx.is_main and cfg.validation_objects > 0:
        from .validation import ValidationSheet

        shown = split.heldout or split.train  # without a split the sheet can only show training objects
        sheet = ValidationSheet(model_dir, data, cfg.validation_objects, ctx.device, steps=cfg.validation_steps,
                                octree_resolution=cfg.validation_octree, seed=cfg.seed, indices=shown,
                                held_out=bool(split.heldout))
    label_dev = label.to(ctx.device) if label is not None else None

    def batch_tensors(indices: list[int], step: int) -> tuple[torch.Tensor, ...]:
        draws = []
        for i in indices:
            moments, visual = data.load(i)
            draws.append(draw_sample(moments, visual, seed=cfg.seed, step=step, index=i, dropout=cfg.condition_dropout,
                                     sample_posterior=cfg.sample_posterior, z_scale_factor=z_scale))
        z = torch.stack([d.z for d in draws]).to(ctx.device)
        eps = torch.stack([d.eps for d in draws]).to(ctx.device)
        visual_t = torch.stack([torch.zeros_like(d.visual) if d.dropped else d.visual for d in draws]).to(ctx.device)
        t, sigma = table.lookup(torch.stack([d.normal for d in draws]), cfg.logit_mean, cfg.logit_std)
        return z, eps, visual_t, t.to(ctx.device), sigma.to(ctx.device)

    def per_sample(indices: list[int], step: int) -> torch.Tensor:
        z, eps, visual_t, t, sigma = batch_tensors(indices, step)
        x_t = noisy_latents(z, eps, sigma)
        lab = label_dev.expand(len(indices), -1, -1) if label_dev is not None else None
        with autocast(cfg, ctx.device):
            v = model(x_t, t, visual=visual_t, label=lab)
        return flow_loss(v, z, eps, x_t, sigma, cfg.precondition_outputs)

    def validation_loss() -> float | None:
        if not split.heldout:
            return None
        was_training = transformer.training
        transformer.eval()
        try:
            return evaluate_loss(transformer, data, cfg, table, z_scale, label, ctx.device, cfg.validation_draws,
                                 indices=split.heldout)
        finally:
            transformer.train(was_training)

    def write_sheet(step: int) -> None:
        assert sheet is not None
        sheet.write(transformer, label, out / "validation" / f"step-{step:08d}.png", step)

    hooks = Hooks(per_sample, lambda: lora_state(transformer), validation_loss,
                  write_sheet if sheet is not None else None)
    result = train_loop(cfg, ctx, model, optimizer, params, schedule, micro, start, out, split_info,
                        open_outputs(out, cfg, start, ctx, stream), hooks, on_step)
    losses, val_loss = result.losses, result.validation_loss

    lora_path = out / f"{cfg.name or out.name}.safetensors"
    if ctx.is_main:
        info = {"base_model": model_dir.name, "base_model_digest": data.params.get("model_digest"), "steps": cfg.steps,
                "data": dict(data.summary(), split=split_info), "config": to_plain(cfg),
                "world_size": ctx.world_size, "final_loss": losses[-1] if losses else None,
                "validation_loss": val_loss}
        save_lora(lora_path, COMPONENT, lora_state(transformer), rank=cfg.rank, alpha=cfg.lora_alpha,
                  target_modules=targets, info=info)
    ctx.barrier()
    return RunResult(lora_path, cfg.steps, losses, ctx.world_size)


__all__ = ["GeometryTrainConfig", "TrainError", "UPSTREAM_LORA_TARGETS", "load_geometry_config", "make_split",
           "train_geometry"]

"""``step1x3d finetune texture``: a style LoRA for the SDXL UNet of the multi-view texture model.

The objective is upstream's ``IG2MVSDXLSystem.training_step`` with the fixed prompt: epsilon
prediction under the texture model's shifted-SNR DDPM schedule (``neural.texture.scheduler``,
interpolated, scale 8), one uniform timestep per asset shared by its six views, MSE; the
reference features come from a no-grad UNet pass over the reference latents at t = 0 (as
upstream; they are zeroed for a dropped reference) and the geometry adapter (frozen) encodes
the position/normal maps. Dropouts as upstream's config: prompt 0.1 (-> the empty prompt),
image 0.1 (-> zero reference features), both 0.1.

LoRA (PEFT, Gaussian init: B = 0, so the untrained LoRA is the base model) on the UNet's own
attention projections ``to_q``, ``to_k``, ``to_v``, ``to_out.0`` (self- and cross-attention);
the MV-Adapter's multi-view and reference branches stay frozen unless
``train_adapter_branches`` adds their projections. AdamW on the LoRA only, gradient clipping
at 1.0 (upstream's ``gradient_clip_val``), optional bf16 autocast, gradient checkpointing and
accumulation. Data order, DDP, checkpoints, loss log and progress are the shared
infrastructure's (see ``finetune.geometry.trainer`` for the data schedule), and so is the held-out
split (``finetune.split``, ``validation_holdout``): held-out assets never train, their loss on fixed
draws is logged at each checkpoint, and the validation sheet (``validation.py``) shows them. The LoRA
file is ``unet.<module>.lora_A/B.weight``: what ``neural.texture.lora`` (and ``serve --lora-dir``) loads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from ..config import ConfigError, TrainConfig, load_config, to_plain
from ..distributed import DistContext, check_world, split_batch
from ..failure import TrainError
from ..lorafile import save_lora
from ..peftlora import inject_lora, load_lora_state, lora_state
from ..prepcache import PrepError
from ..run import Hooks, RunResult, Schedule, autocast, in_process_group, open_outputs, resume, train_loop, wrap_for_ddp
from ..seeding import seed_everything
from ..split import Split, training_split
from .data import TextureDraw, TextureSet, draw_sample

UNET_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
BRANCH_TARGETS: tuple[str, ...] = ("to_q_mv", "to_k_mv", "to_v_mv", "to_out_mv.0",
                                   "to_q_ref", "to_k_ref", "to_v_ref", "to_out_ref.0")
COMPONENT = "unet"  # key prefix in the LoRA file (diffusers' layout; lora.py strips it)
ADAPTER_FILE = "step1x-3d-ig2v.safetensors"


@dataclass
class TextureTrainConfig(TrainConfig):
    sdxl_dir: str | None = None  # SDXL base 1.0, diffusers layout
    vae_dir: str | None = None  # the fp16-fix SDXL VAE
    betas: tuple[float, float] = (0.9, 0.999)  # upstream's texture AdamW
    prompt_dropout: float = 0.1  # upstream system.prompt_drop_prob
    reference_dropout: float = 0.1  # upstream system.image_drop_prob
    cond_dropout: float = 0.1  # upstream system.cond_drop_prob (prompt and reference together)
    max_grad_norm: float = 1.0  # upstream trainer.gradient_clip_val; 0 = no clipping
    train_adapter_branches: bool = False
    validation_guidance: float = 3.0  # the stage's default guidance
    validation_texture_size: int = 256  # the sheet's baked textures

    def check(self) -> None:
        super().check()
        for key in ("prompt_dropout", "reference_dropout", "cond_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        if self.max_grad_norm < 0:
            raise ConfigError("max_grad_norm must be 0 (off) or positive")
        if not 64 <= self.validation_texture_size <= 4096:
            raise ConfigError(f"validation_texture_size must be 64-4096, got {self.validation_texture_size}")


TEXTURE_KEYS: dict[str, tuple[str, Any]] = {
    "system.prompt_drop_prob": ("prompt_dropout", float),
    "system.image_drop_prob": ("reference_dropout", float),
    "system.cond_drop_prob": ("cond_dropout", float),
    "trainer.gradient_clip_val": ("max_grad_norm", float),
}


def load_texture_config(path: Path | None, **overrides: Any) -> TextureTrainConfig:
    return load_config(TextureTrainConfig, path, TEXTURE_KEYS, **overrides)


def resolve_adapter_file(base: Path) -> Path:
    """``--base``: the ig2v adapter file, or the Step1X-3D-Texture folder holding it."""
    if base.is_file():
        return base
    if (base / ADAPTER_FILE).is_file():
        return base / ADAPTER_FILE
    raise ConfigError(f"--base {base}: no {ADAPTER_FILE} there (give the Step1X-3D-Texture folder or the file)")


# -- model ------------------------------------------------------------------------------------------
def add_lora(unet: nn.Module, cfg: TextureTrainConfig) -> list[str]:
    targets = cfg.lora_layers or (UNET_TARGETS + (BRANCH_TARGETS if cfg.train_adapter_branches else ()))
    return inject_lora(unet, targets, cfg, "UNet")


@dataclass
class Embeds:
    """The fixed prompt's and the empty prompt's SDXL embeddings (computed once, text encoders freed)."""

    text: torch.Tensor  # (2, tokens, dim): [empty, prompt]
    pooled: torch.Tensor  # (2, projection)


class TextureObjective:
    """Upstream's loss for a batch of draws, on a (possibly DDP-wrapped) UNet."""

    def __init__(self, unet: nn.Module, cond_encoder: nn.Module, scheduler: Any, embeds: Embeds,
                 resolution: int, device: torch.device) -> None:
        self.unet, self.cond_encoder, self.scheduler = unet, cond_encoder, scheduler
        self.embeds = Embeds(embeds.text.to(device), embeds.pooled.to(device))
        self.device = device
        self.time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], dtype=torch.float32,
                                     device=device)  # SDXL micro-conditioning, as at inference

    def per_sample(self, model: nn.Module, draws: list[TextureDraw], controls: list[torch.Tensor]) -> torch.Tensor:
        dev = self.device
        views = draws[0].latents.shape[0]
        latents = torch.cat([d.latents for d in draws]).to(dev)
        noise = torch.cat([d.noise for d in draws]).to(dev)
        t = torch.tensor([d.timestep for d in draws], device=dev).repeat_interleave(views)
        noisy = self.scheduler.add_noise(latents, noise, t)
        which = torch.tensor([0 if d.drop_prompt else 1 for d in draws], device=dev)
        text, pooled = self.embeds.text[which], self.embeds.pooled[which]
        time_ids = self.time_ids.expand(len(draws), -1)
        with torch.no_grad():
            cache: dict[str, torch.Tensor] = {}
            self.unet(torch.cat([d.reference for d in draws]).to(dev), torch.zeros(len(draws), device=dev, dtype=torch.long),
                      encoder_hidden_states=text, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids},
                      cross_attention_kwargs={"cache_hidden_states": cache, "use_mv": False, "use_ref": False},
                      return_dict=False)
            dropped = torch.tensor([d.drop_reference for d in draws], device=dev)
            ref_states = {k: torch.where(dropped[:, None, None], torch.zeros_like(v), v) for k, v in cache.items()}
            adapter_states = self.cond_encoder(torch.cat(controls).to(dev))
        prediction = model(
            noisy, t, encoder_hidden_states=text.repeat_interleave(views, 0),
            added_cond_kwargs={"text_embeds": pooled.repeat_interleave(views, 0),
                               "time_ids": time_ids.repeat_interleave(views, 0)},
            cross_attention_kwargs={"ref_hidden_states": ref_states, "num_views": views},
            down_intrablock_additional_residuals=list(adapter_states),  # the UNet pops from this list
            return_dict=False)[0]
        err = (prediction.float() - noise.float()) ** 2
        return err.reshape(len(draws), -1).mean(dim=1)


@dataclass
class LoadedBase:
    unet: nn.Module
    cond_encoder: nn.Module
    vae: nn.Module
    scheduler: Any
    embeds: Embeds
    scaling: float
    prompt: Any  # PromptEmbeds of the stage's (prompt, negative prompt): the validation sheet generates with them


def load_base(base: Path, sdxl_dir: Path, vae_dir: Path, dtype: torch.dtype) -> LoadedBase:
    from ...neural.texture.loading import load_models
    from ...neural.texture.pipelines.multiview_sdxl import MultiViewSDXL
    from ...neural.texture.config import NEGATIVE_PROMPT, PROMPT
    from ...pipeline.base import PipelineError

    try:
        models = load_models(resolve_adapter_file(base), sdxl_dir, vae_dir, dtype)
    except PipelineError as exc:
        raise ConfigError(str(exc)) from None
    with torch.no_grad():
        pipe = MultiViewSDXL(models, "cpu", dtype)
        embeds = pipe.encode_prompt(PROMPT, "")  # upstream drops to ""
        inference = pipe.encode_prompt(PROMPT, NEGATIVE_PROMPT)
    both = Embeds(torch.cat([embeds.negative, embeds.positive]).float(),
                  torch.cat([embeds.negative_pooled, embeds.positive_pooled]).float())
    return LoadedBase(models.unet, models.cond_encoder, models.vae, models.scheduler, both,
                      float(models.vae.config.scaling_factor), inference)


def _draws(data: TextureSet, indices: list[int], cfg: TextureTrainConfig, step: int, num_t: int, scaling: float,
           stream: int = 0, dropout: bool = True) -> tuple[list[TextureDraw], list[torch.Tensor]]:
    draws, controls = [], []
    for i in indices:
        view_m, ref_m, control = data.load(i)
        p = (cfg.prompt_dropout, cfg.reference_dropout, cfg.cond_dropout) if dropout else (0.0, 0.0, 0.0)
        draws.append(draw_sample(view_m, ref_m, seed=cfg.seed, step=step, index=i, num_timesteps=num_t, scaling=scaling,
                                 prompt_dropout=p[0], reference_dropout=p[1], cond_dropout=p[2], stream=stream))
        controls.append(torch.from_numpy(control))
    return draws, controls


def evaluate_loss(base: LoadedBase, data: TextureSet, cfg: TextureTrainConfig, device: torch.device,
                  draws: int = 4, indices: list[int] | None = None) -> float:
    """The objective on fixed draws (each of ``indices`` (default: every asset) x ``draws`` noise/timestep
    draws, no dropout): a deterministic measure of fit, unlike the training loss whose timesteps change
    every step. The validation loss of a run with held-out assets is this over them."""
    objective = TextureObjective(base.unet, base.cond_encoder, base.scheduler, base.embeds, data.resolution, device)
    num_t = int(base.scheduler.config.num_train_timesteps)
    total, count = 0.0, 0
    with torch.no_grad():
        for k in range(draws):
            for i in range(len(data)) if indices is None else indices:
                d, c = _draws(data, [i], cfg, k, num_t, base.scaling, stream=1, dropout=False)
                total += float(objective.per_sample(base.unet, d, c).sum())
                count += 1
    return total / max(count, 1)


# -- the run ------------------------------------------------------------------------------------------
def train_texture(cfg: TextureTrainConfig, *, stream: TextIO = sys.stderr,
                  on_step: Callable[[int, float], None] | None = None) -> RunResult:
    """Run (or resume) a texture style LoRA training; returns the LoRA file (rank 0's view)."""
    for name in ("base", "sdxl_dir", "vae_dir", "data", "out"):
        if not getattr(cfg, name):
            flag = name.replace("_", "-")
            raise ConfigError(f"--{flag} is required (or '{name}:' in the config file)")
    return in_process_group(cfg.device, lambda ctx: _train(cfg, ctx, stream, on_step))


def _train(cfg: TextureTrainConfig, ctx: DistContext, stream: TextIO,
           on_step: Callable[[int, float], None] | None) -> RunResult:
    from ...neural.texture.loading import resolve_vae_dir
    from ...pipeline.base import PipelineError
    from .prepare import vae_digest

    check_world(cfg.expected_world_size, ctx.world_size, cfg.num_nodes, cfg.gpus_per_node)
    micro = split_batch(cfg.batch, ctx.world_size, cfg.grad_accum)
    out = Path(cfg.out).expanduser()  # type: ignore[arg-type]
    data = TextureSet(Path(cfg.data).expanduser())  # type: ignore[arg-type]
    try:
        vae_folder = resolve_vae_dir(Path(cfg.vae_dir).expanduser())  # type: ignore[arg-type]
    except PipelineError as exc:
        raise ConfigError(str(exc)) from None
    if data.params.get("vae_digest") != vae_digest(vae_folder):
        raise PrepError(f"{cfg.data} was prepared with another VAE ({data.params.get('vae')}); run "
                        f"'step1x3d finetune texture-prepare' again with --sdxl-vae-dir {cfg.vae_dir}")
    split = make_split(data, cfg)
    schedule = Schedule(len(split.train), cfg.batch, ctx, cfg.seed, ids=split.train)

    base_dtype = torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float32
    base = load_base(Path(cfg.base).expanduser(), Path(cfg.sdxl_dir).expanduser(), vae_folder,  # type: ignore[arg-type]
                     base_dtype)
    unet = base.unet
    seed_everything(cfg.seed)  # identical LoRA initialisation on every rank
    targets = add_lora(unet, cfg)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()  # type: ignore[operator]
    unet.to(ctx.device)
    base.cond_encoder.to(ctx.device)
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)

    split_info = split.describe()
    start = resume(out, cfg, lambda state: load_lora_state(unet, state), optimizer, ctx, stream,
                   expect={"split": json.dumps(split_info)})
    model = wrap_for_ddp(unet, ctx)
    objective = TextureObjective(unet, base.cond_encoder, base.scheduler, base.embeds, data.resolution, ctx.device)
    num_t = int(base.scheduler.config.num_train_timesteps)

    sheet = None
    if ctx.is_main and cfg.validation_objects > 0:
        from .validation import TextureValidationSheet

        shown = list(split.heldout or split.train)  # without a split the sheet can only show training assets
        sheet = TextureValidationSheet(unet, base.cond_encoder, base.vae, base.scheduler, base.prompt, data, shown,
                                       cfg.validation_objects, ctx.device, dtype=base_dtype,
                                       steps=cfg.validation_steps, guidance=cfg.validation_guidance, seed=cfg.seed,
                                       texture_size=cfg.validation_texture_size, held_out=bool(split.heldout))

    def validation_loss() -> float | None:
        if not split.heldout:
            return None
        was_training = unet.training
        unet.eval()
        try:
            return evaluate_loss(base, data, cfg, ctx.device, cfg.validation_draws, indices=list(split.heldout))
        finally:
            unet.train(was_training)

    def per_sample(indices: list[int], step: int) -> torch.Tensor:
        draws, controls = _draws(data, indices, cfg, step, num_t, base.scaling)
        with autocast(cfg, ctx.device):
            return objective.per_sample(model, draws, controls)

    def write_sheet(step: int) -> None:
        assert sheet is not None
        sheet.write(out / "validation" / f"step-{step:08d}.png", step)

    hooks = Hooks(per_sample, lambda: lora_state(unet), validation_loss, write_sheet if sheet is not None else None,
                  max_grad_norm=cfg.max_grad_norm)
    result = train_loop(cfg, ctx, model, optimizer, params, schedule, micro, start, out, split_info,
                        open_outputs(out, cfg, start, ctx, stream), hooks, on_step)
    losses, val_loss = result.losses, result.validation_loss

    lora_path = out / f"{cfg.name or out.name}.safetensors"
    if ctx.is_main:
        info = {"base_model": "Step1X-3D-Texture (ig2v, SDXL)", "kind": "texture", "steps": cfg.steps,
                "data": dict(data.summary(), split=split_info), "config": to_plain(cfg), "world_size": ctx.world_size,
                "final_loss": losses[-1] if losses else None, "validation_loss": val_loss}
        state = lora_state(unet)
        if cfg.lora_alpha != cfg.rank:  # our loader (and kohya-style ones) read a per-module alpha
            for key in [k for k in state if k.endswith(".lora_A.weight")]:
                state[key[: -len(".lora_A.weight")] + ".alpha"] = torch.tensor(cfg.lora_alpha)
        save_lora(lora_path, COMPONENT, state, rank=cfg.rank, alpha=cfg.lora_alpha, target_modules=targets, info=info)
    ctx.barrier()
    return RunResult(lora_path, cfg.steps, losses, ctx.world_size)


def make_split(data: TextureSet, cfg: TextureTrainConfig) -> Split:
    """The run's held-out split of ``data`` (every asset trains without ``validation_holdout``)."""
    return training_split([o["source"] for o in data.objects], cfg.validation_holdout, cfg.seed, cfg.batch, "asset")


__all__ = ["TextureTrainConfig", "TrainError", "evaluate_loss", "load_base", "load_texture_config", "train_texture"]

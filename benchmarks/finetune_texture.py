"""Texture style LoRA training: samples/s and memory.

    python benchmarks/finetune_texture.py                  # tiny rows (CPU) + the full-size memory estimate
    python benchmarks/finetune_texture.py --no-estimate    # tiny rows only
    python benchmarks/finetune_texture.py --markdown FILE  # also write the table as markdown

Rows:
* ``tiny / cpu``: the real trainer (``train_texture``) on the tiny SDXL-shaped models and four
  prepared assets. A sample is one asset: six 64^2 views (8^2 latents), the reference pass and the
  geometry adapter. samples/s is the median of the per-step rates in the run's ``loss.csv``
  (warm-up steps skipped).
* ``full / fake tensors``: ESTIMATE, no GPU: the full-size SDXL UNet with the MV-Adapter processors
  (3.39 B parameters with them) and the geometry adapter, built on the meta device in bf16 and run on
  fake tensors (``memory_estimate.LiveTensorMemory``) through one training step exactly as the
  trainer runs it (``TextureObjective.per_sample``: the no-grad reference pass, the geometry
  adapter, the six-view UNet pass with MV and reference attention; PEFT LoRA rank 64 in fp32 on the
  UNet's own attention projections, bf16 autocast, batch 1 = six 768^2 views, MSE, backward,
  gradient clipping, AdamW step), with and without gradient checkpointing. Peak = resident tensors
  (frozen bf16 weights, LoRA weights) + the largest live total of what the step creates (activations,
  LoRA gradients, Adam states). The VAE and text encoders stay on the host (the trainer moves only
  the UNet and the geometry adapter to the GPU; latents and prompt embeddings are precomputed). Not
  included: CUDA context, allocator fragmentation, kernel workspaces (memory_estimate's budget rule
  adds 20 % of the step + 1 GiB).
* No full-size GPU row: none has been measured (no GPU was lent to this work); nothing is printed
  for it rather than a guess.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.finetune import storage_bytes  # noqa: E402  (one byte count for both fine-tuning benchmarks)


def tiny_rate(steps: int, batch: int, checkpointing: bool) -> float:
    from inference_server.finetune.texture.prepare import TexturePrepareOptions, prepare_textures
    from inference_server.finetune.texture.trainer import load_texture_config, train_texture
    from tests.finetune.texture_helpers import RESOLUTION, tiny_weights, write_assets

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        w = tiny_weights(root / "weights")
        prepare_textures(write_assets(root / "assets"), root / "prep", w["vae_dir"],
                         TexturePrepareOptions(resolution=RESOLUTION), log=lambda _l: None)
        cfg = load_texture_config(None, base=str(w["adapter_file"]), sdxl_dir=str(w["sdxl_dir"]),
                                  vae_dir=str(w["vae_dir"]), data=str(root / "prep"), out=str(root / "run"), rank=8,
                                  steps=steps, batch=batch, lr=1e-3, checkpoint_every=steps,
                                  gradient_checkpointing=checkpointing, device="cpu",
                                  validation_objects=0)
        train_texture(cfg, stream=io.StringIO())
        with open(root / "run" / "loss.csv", newline="") as fh:
            rates = [float(r["samples_per_s"]) for r in csv.DictReader(fh)][2:]
    return statistics.median(rates)


GiB = 1024**3
RANK = 64
VIEWS = 6
FULL_RESOLUTION = 768


def _models(fake_mode: Any | None, checkpointing: bool, unet_config: dict[str, Any], rank: int, dtype: torch.dtype
            ) -> tuple[torch.nn.Module, torch.nn.Module, Any]:
    """The UNet (+ MV-Adapter processors, LoRA in fp32) and geometry adapter in ``dtype``, and AdamW over
    the LoRA, as ``train_texture`` sets them up: on fake tensors (built on the meta device, nothing
    allocated), or for real on the CPU without ``fake_mode`` (the tiny check)."""
    from diffusers import UNet2DConditionModel

    from inference_server.finetune.texture.trainer import TextureTrainConfig, add_lora
    from inference_server.neural.texture.models import build_geometry_adapter, install_mv_processors

    cfg = TextureTrainConfig(rank=rank, mixed_precision="bf16", gradient_checkpointing=checkpointing)
    with torch.device("meta" if fake_mode is not None else "cpu"):
        unet = UNet2DConditionModel(**unet_config)
        install_mv_processors(unet)
        unet = unet.to(dtype)
        cond = build_geometry_adapter(unet.config).to(dtype)
    unet.requires_grad_(False)
    cond.requires_grad_(False)
    add_lora(unet, cfg)  # LoRA weights in fp32, trainable, as the trainer keeps them
    if fake_mode is not None:
        with fake_mode:
            unet.to_empty(device="cpu")
            cond.to_empty(device="cpu")
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    with fake_mode if fake_mode is not None else contextlib.nullcontext():
        optimizer = torch.optim.AdamW(params, lr=1e-4, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return unet, cond, optimizer


def step_estimate(checkpointing: bool, *, unet_config: dict[str, Any] | None = None, resolution: int = FULL_RESOLUTION,
                  rank: int = RANK, fake: bool = True, dtype: torch.dtype = torch.bfloat16
                  ) -> tuple[int, int, int]:
    """(weight bytes, step bytes, LoRA parameters) of one training step at batch 1, counted by
    ``memory_estimate.LiveTensorMemory``. Defaults: the full-size SDXL UNet on fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from benchmarks.full_size import SDXL_SCHEDULER, SDXL_UNET
    from benchmarks.memory_estimate import LiveTensorMemory
    from inference_server.finetune.texture.data import TextureDraw
    from inference_server.finetune.texture.trainer import Embeds, TextureObjective
    from inference_server.neural.texture.scheduler import make_shifted_ddpm

    config = unet_config or SDXL_UNET
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else None
    unet, cond, optimizer = _models(fake_mode, checkpointing, config, rank, dtype)
    lora_params = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    weights = storage_bytes([*unet.parameters(), *unet.buffers(), *cond.parameters(), *cond.buffers()])
    latent = resolution // 8
    pooled = int(config["projection_class_embeddings_input_dim"]) - 6 * int(config["addition_time_embed_dim"])
    g = torch.Generator().manual_seed(0)
    outer = fake_mode if fake_mode is not None else contextlib.nullcontext()
    with outer:
        embeds = Embeds(torch.randn(2, 77, int(config["cross_attention_dim"])), torch.randn(2, pooled))
    objective = TextureObjective(unet, cond, make_shifted_ddpm(SDXL_SCHEDULER), embeds, resolution, torch.device("cpu"))
    draw = TextureDraw(torch.randn(VIEWS, 4, latent, latent, generator=g), torch.randn(1, 4, latent, latent, generator=g),
                       torch.randn(VIEWS, 4, latent, latent, generator=g), 500, False, False)
    control = torch.rand(VIEWS, 6, resolution, resolution, generator=g)
    params = [p for p in unet.parameters() if p.requires_grad]
    memory = LiveTensorMemory(512)
    with outer, memory:
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            loss = objective.per_sample(unet, [draw], [control]).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return weights, memory.peak, lora_params


def full_estimate(checkpointing: bool) -> tuple[float, float, float, int]:
    """(weights GiB, step GiB, estimated peak GiB, LoRA parameters) of one full-size training step on
    fake tensors (nothing allocated)."""
    weights, step, lora_params = step_estimate(checkpointing)
    return weights / GiB, step / GiB, (weights + step) / GiB, lora_params


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="tiny-model steps per row")
    parser.add_argument("--no-tiny", action="store_true", help="skip the tiny CPU rows")
    parser.add_argument("--no-estimate", action="store_true", help="skip the full-size fake-tensor estimate")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the tiny kernels are microseconds long: more threads only contend
    lines = ["| model / device | batch | gradient checkpointing | samples/s | peak memory |", "|---|---|---|---|---|"]
    for ckpt in (False, True) if not args.no_tiny else ():
        rate = tiny_rate(args.steps, 2, ckpt)
        lines.append(f"| tiny SDXL-shaped / cpu (fp32, LoRA r8, 6 views of 64^2) | 2 | {'yes' if ckpt else 'no'} | "
                     f"{rate:.1f} | - |")
        print(lines[-1], flush=True)
    if not args.no_estimate:
        for ckpt in (True, False):
            weights, step, peak, n_lora = full_estimate(ckpt)
            budget = peak + 0.2 * step + 1.0
            lines.append(f"| full SDXL UNet + MV-Adapter / fake tensors (bf16, LoRA r{RANK}: {n_lora / 1e6:.1f} M, "
                         f"6 views of {FULL_RESOLUTION}^2) | 1 | {'yes' if ckpt else 'no'} | (estimate) | "
                         f"{peak:.1f} GiB = {weights:.1f} weights + {step:.1f} step; budget {budget:.1f} GiB |")
            print(lines[-1], flush=True)
    lines.append("| full / cuda | 1 | - | (not measured: no GPU) | - |")
    text = "\n".join(lines)
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())

"""``step1x3d finetune texture-prepare|texture``: texture style LoRAs from a studio's textured assets.

Registered under ``step1x3d finetune`` (see ``cli/finetune.py``). ``texture-prepare`` renders
textured meshes from the texture model's six cameras and caches their VAE latents (one report
line per file); ``texture`` trains the LoRA on them (``torchrun`` for several GPUs, as for
geometry). The result goes into the server's ``--lora-dir``. See docs/finetune.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from blender_addon.protocol.errors import Step1X3DError

from .args import positive_int
from .errors import exit_status


def register_tasks(tasks: Any) -> None:
    prep = tasks.add_parser("texture-prepare", help="textured meshes -> six views' cached VAE latents (resumable)")
    prep.add_argument("--sdxl-vae-dir", type=Path, required=True, help="the fp16-fix SDXL VAE folder")
    prep.add_argument("--data", type=Path, required=True,
                      help="folder of textured GLB/glTF/OBJ+MTL meshes (optional <name>.ref.png concept images)")
    prep.add_argument("--out", type=Path, required=True, help="where the prepared set goes (reruns reuse it)")
    prep.add_argument("--resolution", type=positive_int, default=768, help="view size (the model's: 768)")
    prep.add_argument("--device", default=None, help="torch device for the VAE (default: cuda if present)")
    prep.set_defaults(handler=run_prepare)

    tex = tasks.add_parser("texture", help="train a texture style LoRA (torchrun for several GPUs)")
    tex.add_argument("--config", type=Path, default=None,
                     help="YAML/JSON config (our keys or upstream's: system.prompt_drop_prob, trainer.max_steps ...)")
    tex.add_argument("--base", default=None, help="the Step1X-3D-Texture folder (or its step1x-3d-ig2v.safetensors)")
    tex.add_argument("--sdxl-dir", default=None, help="SDXL base 1.0 (diffusers layout)")
    tex.add_argument("--sdxl-vae-dir", default=None, help="the fp16-fix SDXL VAE (the one the data was prepared with)")
    tex.add_argument("--data", default=None, help="a folder written by 'finetune texture-prepare'")
    tex.add_argument("--out", default=None, help="output folder: LoRA, checkpoints, loss.csv, loss.png")
    tex.add_argument("--name", default=None, help="the LoRA file's name (default: the output folder's name)")
    tex.add_argument("--rank", type=positive_int, default=None, help="LoRA rank (default 64)")
    tex.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default: the rank)")
    tex.add_argument("--steps", type=positive_int, default=None, help="optimizer steps (default 1000)")
    tex.add_argument("--batch", type=positive_int, default=None,
                     help="global batch: assets (of six views) per optimizer step over all processes (default 1)")
    tex.add_argument("--grad-accum", type=positive_int, default=None, help="gradient accumulation steps")
    tex.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 1e-4)")
    tex.add_argument("--seed", type=int, default=None)
    tex.add_argument("--train-adapter-branches", action="store_true",
                     help="also put LoRA on the multi-view and reference attention branches (frozen by default)")
    tex.add_argument("--bf16", action="store_true", help="bf16 autocast, base weights in bf16")
    tex.add_argument("--gradient-checkpointing", action="store_true", help="recompute UNet blocks in the backward pass")
    tex.add_argument("--checkpoint-every", type=positive_int, default=None, help="steps between checkpoints")
    tex.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    tex.add_argument("--validation-objects", type=int, default=None,
                     help="assets on the validation sheet written at each checkpoint (default 2; 0: none)")
    tex.add_argument("--holdout", type=float, default=None,
                     help="assets kept out of training for the validation loss and sheet: a count (2) or a "
                          "fraction (0.1); chosen by the seed (default 0: no split)")
    tex.add_argument("--device", default=None, help="torch device (default: cuda:<local rank> if present, else cpu)")
    tex.set_defaults(handler=run_texture)


def run_prepare(args: argparse.Namespace) -> int:
    try:
        from ..finetune.texture.prepare import TexturePrepareOptions, prepare_textures
    except ImportError as exc:
        raise Step1X3DError(f"fine-tuning needs the neural and train extras: pip install '.[neural,train]' ({exc})",
                            "not_installed") from None
    run = prepare_textures(args.data, args.out, args.sdxl_vae_dir,
                           TexturePrepareOptions(resolution=args.resolution, device=args.device), log=print)
    print(run.summary())
    return 0


def run_texture(args: argparse.Namespace) -> int:
    try:
        from ..finetune.failure import said_by_another_rank
        from ..finetune.texture.trainer import load_texture_config, train_texture
    except ImportError as exc:
        raise Step1X3DError(f"fine-tuning needs the neural and train extras: pip install '.[neural,train]' ({exc})",
                            "not_installed") from None
    try:
        cfg = load_texture_config(
            args.config, base=args.base, sdxl_dir=args.sdxl_dir, vae_dir=args.sdxl_vae_dir, data=args.data,
            out=args.out, name=args.name, rank=args.rank, alpha=args.alpha, steps=args.steps, batch=args.batch,
            grad_accum=args.grad_accum, lr=args.lr, seed=args.seed,
            train_adapter_branches=True if args.train_adapter_branches else None,
            validation_objects=args.validation_objects, validation_holdout=args.holdout,
            mixed_precision="bf16" if args.bf16 else None,
            gradient_checkpointing=True if args.gradient_checkpointing else None,
            checkpoint_every=args.checkpoint_every, resume=True if args.resume else None, device=args.device)
        result = train_texture(cfg, stream=sys.stderr)
    except Step1X3DError as exc:
        if said_by_another_rank(exc):
            return exit_status(exc.code)  # under torchrun one rank prints the run's sentence; the others only fail
        raise
    import os

    if result.world_size == 1 or int(os.environ.get("RANK", "0") or 0) == 0:
        print(f"LoRA written to {result.lora}")
    return 0

"""``step1x3d finetune prepare|geometry``: geometry LoRAs from a studio's own meshes (``train`` extra).

``prepare`` turns a folder of meshes into cached latents and condition tokens (one report line
per file); ``geometry`` trains a LoRA on them, on one process or under ``torchrun`` (see
docs/finetune.md for 1 GPU, 8 GPUs and 2 x 4 GPUs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from blender_addon.protocol.errors import Step1X3DError

from .args import positive_int
from .errors import exit_status


def register(sub: Any) -> None:
    ft = sub.add_parser("finetune", help="fine-tune LoRAs on your own data (prepare, geometry, texture)",
                        description="Fine-tune Step1X-3D LoRAs on your own data. See docs/finetune.md.")
    tasks = ft.add_subparsers(dest="finetune_task", required=True)

    prep = tasks.add_parser("prepare", help="meshes -> cached latents and condition tokens (resumable)")
    prep.add_argument("--base", type=Path, required=True, help="the base geometry model folder (official layout)")
    prep.add_argument("--data", type=Path, required=True, help="folder of GLB/glTF/OBJ/PLY/STL/OFF meshes")
    prep.add_argument("--out", type=Path, required=True, help="where the prepared set goes (reruns reuse it)")
    prep.add_argument("--points", type=positive_int, default=None,
                      help="surface and sharp-edge points per object (default: n_samples of the VAE config, 32768)")
    prep.add_argument("--views", type=positive_int, default=8, help="condition renders per object")
    prep.add_argument("--render-size", type=positive_int, default=512, help="render size in pixels")
    prep.add_argument("--foreground-ratio", type=float, default=0.90, help="object size in the condition image")
    prep.add_argument("--sharp-angle", type=float, default=15.0, help="dihedral angle (degrees) of a sharp edge")
    prep.add_argument("--watertight-resolution", type=positive_int, default=256,
                      help="grid used to close open meshes")
    prep.add_argument("--up", choices=("y", "z"), default="y", help="the meshes' up axis (glTF: y)")
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--device", default=None, help="torch device for the encoders (default: cuda if present)")
    prep.set_defaults(handler=run_prepare)

    geo = tasks.add_parser("geometry", help="train a geometry LoRA (torchrun for several GPUs)")
    geo.add_argument("--config", type=Path, default=None,
                     help="YAML/JSON config (our keys or upstream's: system.use_lora, training.lora_rank, distributed)")
    geo.add_argument("--base", default=None, help="the base geometry model folder")
    geo.add_argument("--data", default=None, help="a folder written by 'finetune prepare'")
    geo.add_argument("--out", default=None, help="output folder: LoRA, checkpoints, loss.csv, loss.png")
    geo.add_argument("--name", default=None, help="the LoRA file's name (default: the output folder's name)")
    geo.add_argument("--rank", type=positive_int, default=None, help="LoRA rank (default 64)")
    geo.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default: the rank)")
    geo.add_argument("--steps", type=positive_int, default=None, help="optimizer steps (default 1000)")
    geo.add_argument("--batch", type=positive_int, default=None,
                     help="global batch: samples per optimizer step over all processes (default 1)")
    geo.add_argument("--grad-accum", type=positive_int, default=None, help="gradient accumulation steps")
    geo.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 1e-4, as upstream)")
    geo.add_argument("--seed", type=int, default=None)
    geo.add_argument("--bf16", action="store_true", help="bf16 autocast, base weights in bf16")
    geo.add_argument("--gradient-checkpointing", action="store_true", help="recompute blocks in the backward pass")
    geo.add_argument("--checkpoint-every", type=positive_int, default=None, help="steps between checkpoints")
    geo.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    geo.add_argument("--validation-objects", type=int, default=None,
                     help="objects on the validation sheet written at each checkpoint (default 2; 0: none)")
    geo.add_argument("--holdout", type=float, default=None,
                     help="objects kept out of training for the validation loss and sheet: a count (2) or a "
                          "fraction (0.1); chosen by the seed (default 0: no split)")
    geo.add_argument("--device", default=None, help="torch device (default: cuda:<local rank> if present, else cpu)")
    geo.set_defaults(handler=run_geometry)

    from .finetune_texture import register_tasks  # texture-prepare, texture (its own module)

    register_tasks(tasks)


def run_prepare(args: argparse.Namespace) -> int:
    from ..finetune.geometry.prepare import PrepareOptions, prepare

    options = PrepareOptions(points=args.points, views=args.views, render_size=args.render_size,
                             foreground_ratio=args.foreground_ratio, sharp_angle=args.sharp_angle,
                             watertight_resolution=args.watertight_resolution, up=args.up, seed=args.seed,
                             device=args.device)
    run = prepare(args.data, args.out, args.base, options, log=print)
    print(run.summary())
    return 0


def run_geometry(args: argparse.Namespace) -> int:
    try:
        from ..finetune.failure import said_by_another_rank
        from ..finetune.geometry.trainer import load_geometry_config, train_geometry
    except ImportError as exc:
        raise Step1X3DError(f"fine-tuning needs the neural and train extras: pip install '.[neural,train]' ({exc})",
                            "not_installed") from None
    try:
        cfg = load_geometry_config(
            args.config, base=args.base, data=args.data, out=args.out, name=args.name, rank=args.rank,
            alpha=args.alpha, steps=args.steps, batch=args.batch, grad_accum=args.grad_accum, lr=args.lr,
            seed=args.seed, mixed_precision="bf16" if args.bf16 else None,
            gradient_checkpointing=True if args.gradient_checkpointing else None,
            checkpoint_every=args.checkpoint_every, resume=True if args.resume else None, device=args.device,
            validation_objects=args.validation_objects, validation_holdout=args.holdout)
        result = train_geometry(cfg, stream=sys.stderr)
    except Step1X3DError as exc:
        if said_by_another_rank(exc):
            return exit_status(exc.code)  # under torchrun one rank prints the run's sentence; the others only fail
        raise
    if result.world_size == 1 or _rank() == 0:
        print(f"LoRA written to {result.lora}")
    return 0


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0") or 0)

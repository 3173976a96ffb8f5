"""The parts of a training run that every trainer (geometry, texture) does the same way:
resume from the latest checkpoint, wrap the model for DDP, open the run's outputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from .checkpoint import load_latest
from .config import ConfigError, TrainConfig, to_plain
from .distributed import DistContext
from .losslog import LossLog
from .progress import TrainProgress
from .seeding import set_rng_state


def resume(
    out: Path, cfg: TrainConfig, load_lora: Callable[[dict[str, torch.Tensor]], None],
    optimizer: torch.optim.Optimizer, ctx: DistContext, stream: TextIO, *, expect: dict[str, Any] | None = None,
) -> int:
    """The step to start from: the latest checkpoint's with ``cfg.resume`` (LoRA, optimizer and RNG restored), else 0.

    ``expect``: entries the checkpoint must hold with these values when it holds them at all (e.g. the
    held-out split: resuming with another one would train on objects the run has validated on)."""
    if not cfg.resume:
        return 0
    found = load_latest(out)
    # Rank 0 writes the checkpoints and every rank reads them: ranks that see different ones (an --out
    # that is not shared between nodes) would run different steps and hang in their collectives.
    if not ctx.same_on_all(found[0] if found is not None else 0):
        raise ConfigError(f"the ranks of this run see different checkpoints in {out / 'checkpoints'}; --out must be "
                          "on storage every node shares (rank 0 writes it, every rank resumes from it)")
    if found is None:
        if ctx.is_main:
            print(f"no checkpoint in {out / 'checkpoints'}: starting from step 0", file=stream)
        return 0
    start, state = found
    if start > cfg.steps:
        raise ConfigError(f"the checkpoint is at step {start}, beyond --steps {cfg.steps}")
    for key, value in (expect or {}).items():
        if key in state and state[key] != value:
            raise ConfigError(f"the checkpoint at step {start} in {out / 'checkpoints'} was written with another {key}; "
                              f"resume with the settings the run started with ({out / 'config.json'})")
    load_lora(state["lora"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return start


def wrap_for_ddp(module: nn.Module, ctx: DistContext) -> nn.Module:
    """The module as DistributedDataParallel under torchrun, as it is otherwise."""
    if not ctx.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def open_outputs(
    out: Path, cfg: TrainConfig, start: int, ctx: DistContext, stream: TextIO,
) -> tuple[LossLog | None, TrainProgress | None]:
    """Rank 0 only: the run's config.json, its loss.csv and its progress display."""
    if not ctx.is_main:
        return None, None
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_plain(cfg), indent=2), encoding="utf-8")
    log = LossLog(out / "loss.csv", resume_step=start)
    progress = TrainProgress(cfg.steps, start, stream)
    if start:
        progress.message(f"resumed from step {start}")
    return log, progress


__all__ = ["open_outputs", "resume", "wrap_for_ddp"]

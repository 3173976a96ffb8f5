"""The parts of a training run that every trainer (geometry, texture) does the same way:
resume from the latest checkpoint, wrap the model for DDP, open the run's outputs, and the step loop
itself (micro-batches, optimizer, loss log, checkpoints, failure report); a trainer brings only its
objective and its validation through :class:`Hooks`."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import torch
from torch import nn

from .checkpoint import load_latest, save_checkpoint
from .config import ConfigError, TrainConfig, to_plain
from .distributed import DistContext, init_distributed, shutdown
from .failure import Terminated, TrainError, run_failed, setup_failed, sigterm_raises
from .losslog import LossLog
from .progress import TrainProgress
from .seeding import rng_state, set_rng_state


T = TypeVar("T")


def in_process_group(device: str | None, body: Callable[[DistContext], T]) -> T:
    """``body`` in torchrun's process group (or as one process). A failure outside the step loop (a config
    every rank refuses, a file one rank cannot read, the final save) is said once for the whole run
    (``failure.setup_failed``); the loop's own failures are already agreed on."""
    ctx = init_distributed(device)
    try:
        return body(ctx)
    except TrainError:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        failure = setup_failed(exc, ctx)
        if failure is exc:
            raise
        raise failure from exc
    finally:
        shutdown(ctx)


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


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for ``mixed_precision: bf16``, nothing otherwise."""
    if cfg.mixed_precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def save_state(out: Path, step: int, lora: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
               cfg: TrainConfig, split_info: dict[str, Any]) -> None:
    """The checkpoint of ``step``: LoRA, optimizer, RNG, config and held-out split (what ``resume`` reads)."""
    state = {"step": step, "lora": lora, "optimizer": optimizer.state_dict(), "rng": rng_state(),
             "config": json.dumps(to_plain(cfg)), "split": json.dumps(split_info)}
    save_checkpoint(out, step, state, cfg.keep_checkpoints)


@dataclass
class RunResult:
    lora: Path
    steps: int
    losses: list[float]
    world_size: int


class Schedule:
    """Which objects each rank trains on at each optimizer step. ``ids`` maps the sampler's positions
    to object indices (the training part of a split); by default object ``i`` is position ``i``."""

    def __init__(self, n: int, batch: int, ctx: DistContext, seed: int, ids: Sequence[int] | None = None) -> None:
        from torch.utils.data import DistributedSampler

        if ids is not None and len(ids) != n:
            raise ValueError(f"{len(ids)} object ids for {n} positions")
        self.ids = list(ids) if ids is not None else list(range(n))
        if n < batch:
            raise ConfigError(f"the batch of {batch} is larger than the {n} prepared object(s); lower --batch")
        self.per_epoch = n // batch  # whole global batches; the remainder of an epoch is skipped
        self.local = batch // ctx.world_size
        indices: Any = range(n)  # the sampler only needs len()
        self.sampler: DistributedSampler[int] = DistributedSampler(indices, num_replicas=ctx.world_size, rank=ctx.rank,
                                                                   shuffle=True, seed=seed, drop_last=False)
        self._epoch = -1
        self._order: list[int] = []

    def indices(self, step: int) -> list[int]:
        """Positions of the prepared set this rank trains on at optimizer step ``step`` (1-based)."""
        epoch, pos = divmod(step - 1, self.per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._order, self._epoch = list(self.sampler), epoch
        return [self.ids[p] for p in self._order[pos * self.local : (pos + 1) * self.local]]


@dataclass
class Hooks:
    """What differs between the trainers' loops."""

    per_sample: Callable[[list[int], int], torch.Tensor]  # the objective of each sample of a micro-batch (autocast inside)
    lora: Callable[[], dict[str, torch.Tensor]]  # the LoRA's current state (checkpoints)
    validation_loss: Callable[[], float | None]  # rank 0 at each checkpoint; None without held-out objects
    write_sheet: Callable[[int], None] | None = None  # rank 0, after every rank knows the checkpoint is on disk
    max_grad_norm: float = 0.0  # clip the gradient of ``params`` before each optimizer step (0: no clipping)


@dataclass
class LoopResult:
    losses: list[float]
    validation_loss: float | None  # the last one logged


def train_loop(cfg: TrainConfig, ctx: DistContext, model: nn.Module, optimizer: torch.optim.Optimizer,
               params: Sequence[torch.nn.Parameter], schedule: Schedule, micro: int, start: int, out: Path,
               split_info: dict[str, Any], outputs: tuple[LossLog | None, TrainProgress | None], hooks: Hooks,
               on_step: Callable[[int, float], None] | None = None) -> LoopResult:
    """Steps ``start + 1 .. cfg.steps``: ``grad_accum`` micro-batches of ``micro`` samples per rank (DDP syncs
    on the last), the optimizer step, the mean loss over ranks; rank 0 logs it and, at each checkpoint, the
    validation loss, the checkpoint and the loss plot. Every rank waits at each checkpoint until it is on
    disk, so a failure's resume point is always written. A failure (or SIGTERM) leaves as the run's one
    sentence (``failure.run_failed``)."""
    log, progress = outputs
    losses: list[float] = []
    val_loss: float | None = None
    step = start
    t_run = time.perf_counter()

    def micro_step(indices: list[int], step: int, last_micro: bool) -> float:
        sync = contextlib.nullcontext() if (last_micro or not ctx.distributed) else model.no_sync()  # type: ignore[operator]
        with sync:
            loss = hooks.per_sample(indices, step).sum() / schedule.local
            loss.backward()
        return float(loss.detach())

    with sigterm_raises() as guard:
        try:
            for step in range(start + 1, cfg.steps + 1):
                t0 = time.perf_counter()
                indices = schedule.indices(step)
                total = 0.0
                for m in range(cfg.grad_accum):
                    total += micro_step(indices[m * micro : (m + 1) * micro], step, m == cfg.grad_accum - 1)
                if hooks.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, hooks.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                loss = ctx.mean(total)
                losses.append(loss)
                rate = cfg.batch / max(time.perf_counter() - t0, 1e-9)
                at_checkpoint = step % cfg.checkpoint_every == 0 or step == cfg.steps
                if ctx.is_main:
                    assert log is not None and progress is not None
                    val = hooks.validation_loss() if at_checkpoint else None
                    val_loss = val if val is not None else val_loss
                    log.append(step, loss, cfg.lr, rate, time.perf_counter() - t_run, val)
                    progress.update(step, loss, rate)
                    if at_checkpoint:
                        save_state(out, step, hooks.lora(), optimizer, cfg, split_info)
                        log.plot(out / "loss.png")
                if at_checkpoint:
                    ctx.barrier()  # every rank past this step knows its checkpoint is on disk
                    if ctx.is_main and hooks.write_sheet is not None:
                        hooks.write_sheet(step)
                if on_step is not None:
                    on_step(step, loss)
        except (Exception, KeyboardInterrupt, Terminated) as exc:
            guard.disarm()  # the report below must not be cut short by torchrun's SIGTERM
            if progress is not None:
                progress.finish()
            raise run_failed(exc, ctx, step, out) from exc
    if progress is not None:
        progress.finish()
    if log is not None:
        log.plot(out / "loss.png")  # also after a resume that had no step left to run
    return LoopResult(losses, val_loss)


__all__ = ["Hooks", "LoopResult", "RunResult", "Schedule", "autocast", "in_process_group", "open_outputs", "resume", "save_state", "train_loop", "wrap_for_ddp"]

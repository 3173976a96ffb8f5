"""PyTorch's own distributed engine: ``torchrun`` sets the environment, we join its process group.

Launched plainly (no ``WORLD_SIZE`` in the environment) a run is one process. Under
``torchrun`` each process joins the group with NCCL when it trains on a GPU and gloo on the
CPU; only rank 0 writes files. A rank that fails raises, torchrun's agent then stops the others,
and the group's timeout bounds how long a survivor can wait in a collective. The group is joined
through torchrun's own key-value store (``env://`` rendezvous, done here so that the context keeps
the store): ``finetune.failure`` uses it to make a failed run say its cause once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from .config import ConfigError

DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None  # None: a single process, no group
    store: Any = field(default=None, compare=False)  # torch.distributed.Store of the group (None: single process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of a per-rank number over all ranks (for logging; every rank gets it)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device if self.backend == "nccl" else "cpu")
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def same_on_all(self, value: int) -> bool:
        """True on every rank when every rank holds the same ``value`` (e.g. the step it resumes from)."""
        if not self.distributed:
            return True
        t = torch.tensor([value, -value], dtype=torch.int64, device=self.device if self.backend == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t[0].item()) == -int(t[1].item())


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def init_distributed(device: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
    """Join torchrun's process group when launched by it; otherwise a single-process context."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device is None:
        dev = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local_rank)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but this machine has no CUDA GPU")
        torch.cuda.set_device(dev)
    if world <= 1:
        return DistContext(0, 1, 0, dev, None)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    store = None
    if not dist.is_initialized():
        # What init_method="env://" does, step by step with public calls, so that we keep the store.
        # torchrun keeps one store across the attempts of a run (--max-restarts): the group's keys get
        # the attempt in their prefix, or a new attempt would read the dead one's addresses and hang.
        timeout = timedelta(seconds=timeout_s)
        store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
        store.set_timeout(timeout)
        prefix = f"default_pg/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT') or 0}"
        dist.init_process_group(backend=backend, store=dist.PrefixStore(prefix, store), rank=rank, world_size=world,
                                timeout=timeout, device_id=dev if dev.type == "cuda" else None)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend, store)


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def check_world(expected: int, actual: int, num_nodes: int, gpus_per_node: int) -> None:
    """The config's ``distributed`` block must match how the run was launched."""
    if expected == 1 or expected == actual:
        return
    raise ConfigError(
        f"the config asks for {expected} processes ({num_nodes} node(s) x {gpus_per_node} GPU(s)) but this run has "
        f"{actual}; launch it with torchrun --nnodes {num_nodes} --nproc-per-node {gpus_per_node} "
        "(see docs/finetune.md)")


def split_batch(batch: int, world_size: int, grad_accum: int) -> int:
    """Samples per micro-batch on each rank; the global batch must split evenly."""
    if batch % (world_size * grad_accum):
        raise ConfigError(f"the batch of {batch} does not split evenly over {world_size} process(es) x "
                          f"{grad_accum} accumulation step(s); use a multiple of {world_size * grad_accum}")
    return batch // (world_size * grad_accum)

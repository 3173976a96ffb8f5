"""Training checkpoints: ``<out>/checkpoints/step-00001000.pt``, written atomically, newest wins.

A checkpoint holds the trainable (LoRA) tensors, the optimizer state, the step and the torch
RNG state; the data order and every per-sample draw follow from (seed, step), so loading one
and continuing gives exactly the run that never stopped. Loaded with ``weights_only=True``
(tensors and plain containers only, nothing that can run code).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError

_NAME = re.compile(r"^step-(\d{8})\.pt$")
_PARTIAL = re.compile(r"^\.step-\d{8}\.pt\.tmp-\d+$")  # a save cut short (killed mid-write): never a checkpoint


def checkpoint_dir(out: Path) -> Path:
    return out / "checkpoints"


def checkpoint_path(out: Path, step: int) -> Path:
    return checkpoint_dir(out) / f"step-{step:08d}.pt"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    folder = checkpoint_dir(out)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_step(out: Path) -> int:
    """The newest checkpoint's step (0 when there is none)."""
    found = list_checkpoints(out)
    return found[-1][0] if found else 0


def save_checkpoint(out: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` for ``step`` through a temporary file and drop all but the newest ``keep``."""
    path = checkpoint_path(out, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.iterdir():  # only rank 0 saves, one save at a time: any partial file is stale
        if _PARTIAL.match(stale.name):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for _, old in list_checkpoints(out)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest(out: Path) -> tuple[int, dict[str, Any]] | None:
    """The newest checkpoint's (step, state), or None when there is none."""
    found = list_checkpoints(out)
    if not found:
        return None
    step, path = found[-1]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file: one sentence naming it
        raise ConfigError(f"cannot read checkpoint {path} ({type(exc).__name__}); delete it to resume from the "
                          "previous one") from exc
    if not isinstance(state, dict) or state.get("step") != step:
        raise ConfigError(f"checkpoint {path} is not a checkpoint of this trainer")
    return step, state

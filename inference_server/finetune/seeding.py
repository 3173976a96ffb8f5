"""Seeded, reproducible randomness that does not depend on how the work is split.

Every random number of a training step (noise, timestep, condition dropout, view choice,
posterior sample) is drawn from a generator seeded by ``(seed, step, sample index)``. One
process with a batch of 4 and two ranks with 2 each therefore draw identical numbers for each
sample, and a resumed run draws what the uninterrupted one would have: no RNG state has to be
carried across processes or checkpoints for the data path.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (LoRA initialisation uses torch's global generator)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence: well spread, platform independent)."""
    state = np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def sample_generator(seed: int, step: int, index: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one sample of one step (CPU, so that GPU and CPU runs draw alike)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(derived_seed(seed, step, index, stream))
    return g


def rng_state() -> dict[str, torch.Tensor]:
    """torch's global generator state (checkpoints keep it for anything outside the data path)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda{i}"] = s
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        cuda = [state[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in state]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)

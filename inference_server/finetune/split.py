"""The held-out validation split: which prepared objects never train, decided by the seed.

A run's ``validation_holdout`` keeps some objects out of training; the validation loss and the
validation sheet use only them. The choice depends on the seed and on each object's name (not on
its position in the folder), so re-preparing a folder in another order, or on another machine,
holds out the same objects, and every rank of a distributed run computes the same split on its
own. Any trainer (geometry, texture) calls :func:`split_objects` with its objects' names::

    split = split_objects([o["source"] for o in data.objects], cfg.validation_holdout, cfg.seed)
    schedule = Schedule(len(split.train), cfg.batch, ctx, cfg.seed, ids=split.train)
    ...  # validation uses split.heldout; split.describe() goes into the LoRA's metadata
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import ConfigError
from .seeding import derived_seed

SPLIT_STREAM = 7  # keeps the split's draws apart from the per-sample streams (0: training, 1: evaluation)


@dataclass(frozen=True)
class Split:
    train: tuple[int, ...]  # indices (into the prepared set) of the objects that train, ascending
    heldout: tuple[int, ...]  # indices of the held-out objects, ascending
    names: tuple[str, ...]  # every object's name, by index
    holdout: float  # the setting it was made with (a count >= 1, or a fraction < 1)
    seed: int

    def describe(self) -> dict[str, Any]:
        """What the LoRA's metadata and the checkpoints record (names, so it can be read and compared)."""
        return {"holdout": self.holdout, "seed": self.seed, "training": [self.names[i] for i in self.train],
                "heldout": [self.names[i] for i in self.heldout]}


def check_holdout(value: float) -> None:
    """0 (no split), a fraction in (0, 1), or a whole count of objects."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
            value >= 1 and float(value) != int(value)):
        raise ConfigError(f"validation_holdout must be 0, a fraction between 0 and 1, or a whole number of "
                          f"objects, got {value!r}")


def holdout_count(holdout: float, n: int) -> int:
    """How many of ``n`` objects ``holdout`` keeps out (a fraction rounds, but keeps at least one)."""
    check_holdout(holdout)
    if holdout == 0:
        return 0
    count = max(1, round(holdout * n)) if holdout < 1 else int(holdout)
    if count >= n:
        raise ConfigError(f"validation_holdout {holdout:g} would keep {count} of the {n} prepared object(s) out of "
                          "training; lower it (at least one object must train)")
    return count


def split_objects(names: Sequence[str], holdout: float, seed: int) -> Split:
    """Hold out ``holdout`` of the objects called ``names``: those whose (seed, name) draw is smallest."""
    k = holdout_count(holdout, len(names))
    rank = sorted(range(len(names)), key=lambda i: (derived_seed(seed, SPLIT_STREAM, zlib.crc32(names[i].encode())),
                                                    names[i]))
    held = set(rank[:k])
    train = tuple(i for i in range(len(names)) if i not in held)
    return Split(train, tuple(sorted(held)), tuple(names), float(holdout), seed)


def training_split(names: Sequence[str], holdout: float, seed: int, batch: int, noun: str = "object") -> Split:
    """A run's split (every object trains without ``holdout``), refused when too few of them are left to
    fill one global batch (``noun`` names them in the refusal: "object", "asset")."""
    split = split_objects(names, holdout, seed)
    if split.heldout and len(split.train) < batch:
        raise ConfigError(f"the batch of {batch} is larger than the {len(split.train)} {noun}(s) left to train "
                          f"after holding out {len(split.heldout)} for validation; lower --batch or --holdout")
    return split


__all__ = ["SPLIT_STREAM", "Split", "check_holdout", "holdout_count", "split_objects", "training_split"]

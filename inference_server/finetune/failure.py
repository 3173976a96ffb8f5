"""How a failed training run says so: one sentence for the whole run, naming the rank that failed
and where ``--resume`` continues from.

On one process that is simply the failure's sentence. Under ``torchrun`` every rank stops when
one fails (the others' collectives break, or torchrun's agent terminates them), and each would
otherwise print its own view of it; the ranks agree through the process group's key-value store
(torchrun's own rendezvous store) on who speaks:

* A rank that fails on its own (an exception of its own code: a bad file, out of memory, Ctrl-C)
  records that in the store and names itself, unless another rank recorded a failure first.
* A rank that stops only because another one did (its collective lost the peer, or torchrun
  sent it SIGTERM) stays silent if a rank has recorded its own failure within a few seconds.
  If none has, the failed rank died without a word (killed outright, out of host memory, a
  segfault, a lost node): the first such survivor names the rank(s) that never answered the roll
  call of survivors.

The store is torchrun's (held by its agent, so it outlives any worker); if it cannot be reached
the rank speaks anyway (two sentences beat none).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from blender_addon.protocol.errors import Step1X3DError

from .checkpoint import checkpoint_dir, latest_step
from .distributed import DistContext

GRACE_S = 5.0  # how long a survivor waits for the failed rank's own word before speaking for it
_POLL_S = 0.1
# Text of the transports' errors when a peer's connection is gone (gloo, NCCL); DDP's reducer
# raises them as plain RuntimeErrors, so the type alone does not tell.
_PEER_MARKERS = ("closed by peer", "reset by peer", "remote worker", "communicator was aborted", "NCCL error")


class TrainError(Step1X3DError):
    """The run failed; the message says which rank, where, and how to resume. ``reported_elsewhere``:
    another rank of the run has said it already (the CLI then prints nothing more)."""

    default_code = "training_failed"

    def __init__(self, message: str, *, reported_elsewhere: bool = False) -> None:
        super().__init__(message)
        self.reported_elsewhere = reported_elsewhere


class Terminated(BaseException):
    """SIGTERM: torchrun stopping the survivors of a failed rank, or a scheduler pre-empting the job.
    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way swallows it."""


class SigtermGuard:
    """While armed, SIGTERM raises :class:`Terminated` in the main thread; once the run is reporting
    its failure (disarmed), further SIGTERMs are ignored so the report is not cut short (torchrun
    sends SIGKILL after its own grace period if a process lingers)."""

    def __init__(self) -> None:
        self.armed = True

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        if self.armed:
            self.armed = False
            raise Terminated(f"stopped by {signal.Signals(signum).name}")

    def disarm(self) -> None:
        self.armed = False


@contextmanager
def sigterm_raises() -> Iterator[SigtermGuard]:
    """Within the block, SIGTERM raises :class:`Terminated` (so the run reports where to resume)."""
    guard = SigtermGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, guard.handler)
    try:
        yield guard
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_hint(out: Path) -> str:
    done = latest_step(out)
    if done:
        return f"resume with --resume (from step {done}, {checkpoint_dir(out)})"
    return "no checkpoint was written yet; lower --checkpoint-every to keep more progress"


def is_peer_failure(exc: BaseException) -> bool:
    """True when ``exc`` says another process of the run went away (not a failure of this rank's own)."""
    if isinstance(exc, Terminated):
        return True
    try:
        import torch.distributed as dist

        if isinstance(exc, dist.DistError):
            return True
    except ImportError:  # pragma: no cover - torch without distributed support
        pass
    text = str(exc)
    return any(marker in text for marker in _PEER_MARKERS)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, Terminated):
        return str(exc)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def run_failed(exc: BaseException, ctx: DistContext, step: int, out: Path) -> TrainError:
    """The one-sentence error of this rank for ``exc`` at ``step`` (see the module docstring)."""
    where = resume_hint(out)
    own = f"rank {ctx.rank} of {ctx.world_size} failed at step {step} ({_reason(exc)}); {where}"
    if not ctx.distributed or ctx.store is None:
        return TrainError(own)
    try:
        board = _Board(ctx)
        if not is_peer_failure(exc):
            return TrainError(own, reported_elsewhere=not board.record_own_failure())
        if board.wait_for_own_failure(GRACE_S):
            return TrainError(own, reported_elsewhere=True)  # the failed rank has named itself
        if not board.claim():
            return TrainError(own, reported_elsewhere=True)
        silent = board.missing()
    except Exception:  # noqa: BLE001 - the store went away with its host: speak rather than stay silent
        return TrainError(own)
    if silent:
        who = f"rank {silent[0]}" if len(silent) == 1 else f"ranks {', '.join(str(r) for r in silent)}"
        return TrainError(f"{who} of {ctx.world_size} died during step {step} without a message (killed, out of "
                          f"memory or crashed; torchrun's report shows the exit code); {where}")
    return TrainError(f"rank {ctx.rank} of {ctx.world_size} stopped at step {step} because another rank stopped "
                      f"({_reason(exc)}); {where}")


class _Board:
    """The run's failure notes in torchrun's store (keys per restart, so an elastic restart starts clean)."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx
        self.store: Any = ctx.store
        self.store.set_timeout(timedelta(seconds=GRACE_S))
        self.prefix = f"step1x3d/failure/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
        self.store.set(f"{self.prefix}answered/{ctx.rank}", "1")  # the roll call of living ranks

    def record_own_failure(self) -> bool:
        """Note this rank's own failure; True when it is the run's first word (so this rank speaks)."""
        self.store.add(f"{self.prefix}own", 1)
        return self.claim()

    def claim(self) -> bool:
        return int(self.store.add(f"{self.prefix}spoken", 1)) == 1

    def wait_for_own_failure(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            if int(self.store.add(f"{self.prefix}own", 0)) > 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)

    def missing(self) -> list[int]:
        """Ranks that never answered the roll call (they died without running any Python)."""
        return [r for r in range(self.ctx.world_size) if not self.store.check([f"{self.prefix}answered/{r}"])]


__all__ = ["GRACE_S", "SigtermGuard", "Terminated", "TrainError", "is_peer_failure", "resume_hint", "run_failed", "sigterm_raises"]

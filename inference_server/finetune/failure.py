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

Failures outside the step loop go the same way (:func:`setup_failed`): a config that every rank refuses
is said by the first rank to note it, a file only one rank cannot read by that rank. Before the process
group exists there is no store, but nothing there differs between ranks (the command line, the config
file): rank 0 says it (:func:`said_by_another_rank`).
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
LINGER_S = 5.0  # how long a silent rank waits before exiting, so that the rank that speaks prints first
# Text of the transports' errors when a peer's connection is gone (gloo, NCCL); DDP's reducer
# raises them as plain RuntimeErrors, so the type alone does not tell.
_PEER_MARKERS = ("closed by peer", "reset by peer", "remote worker", "communicator was aborted", "NCCL error")


class TrainError(Step1X3DError):
    """The run failed; the message says which rank, where, and how to resume. ``reported_elsewhere``:
    another rank of the run has said it already (the CLI then prints nothing more)."""

    default_code = "training_failed"

    def __init__(self, message: str, code: str | None = None, *, reported_elsewhere: bool = False) -> None:
        super().__init__(message, code)
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


def _one_voice(exc: BaseException, ctx: DistContext) -> tuple[bool, list[int] | None]:
    """(whether this rank speaks for the run, and when it speaks for others: the ranks that died silently;
    None when it speaks of its own failure)."""
    if not ctx.distributed or ctx.store is None:
        return True, None
    try:
        board = _Board(ctx)
        if not is_peer_failure(exc):
            return board.record_own_failure(), None
        if board.wait_for_own_failure(GRACE_S) or not board.claim():
            return False, None  # the failed rank has named itself, or another survivor speaks
        return True, board.missing()
    except Exception:  # noqa: BLE001 - the store went away with its host: speak rather than stay silent
        return True, None


def _for_others(silent: list[int], ctx: DistContext, exc: BaseException, when: str) -> str:
    if silent:
        who = f"rank {silent[0]}" if len(silent) == 1 else f"ranks {', '.join(str(r) for r in silent)}"
        return (f"{who} of {ctx.world_size} died {when} without a message (killed, out of memory or crashed; "
                "torchrun's report shows the exit code)")
    return f"rank {ctx.rank} of {ctx.world_size} stopped {when} because another rank stopped ({_reason(exc)})"


def run_failed(exc: BaseException, ctx: DistContext, step: int, out: Path) -> TrainError:
    """The one-sentence error of this rank for ``exc`` at ``step`` (see the module docstring)."""
    where = resume_hint(out)
    own = f"rank {ctx.rank} of {ctx.world_size} failed at step {step} ({_reason(exc)}); {where}"
    speaks, silent = _one_voice(exc, ctx)
    if not speaks:
        return TrainError(own, reported_elsewhere=True)
    if silent is None:
        return TrainError(own)
    return TrainError(f"{_for_others(silent, ctx, exc, f'during step {step}')}; {where}")


def setup_failed(exc: BaseException, ctx: DistContext) -> BaseException:
    """What a rank raises for a failure outside the step loop (loading, a config refused after the process
    group exists, the final save): ``exc`` itself on one process; under torchrun a :class:`TrainError` with
    the failure's own sentence (and code), said by one rank only."""
    if not ctx.distributed:
        return exc
    own = str(exc) if isinstance(exc, Step1X3DError) else f"rank {ctx.rank} of {ctx.world_size} failed ({_reason(exc)})"
    code = exc.code if isinstance(exc, Step1X3DError) else None
    speaks, silent = _one_voice(exc, ctx)
    if not speaks:
        return TrainError(own, code, reported_elsewhere=True)
    if silent is None:
        return TrainError(own, code)
    return TrainError(_for_others(silent, ctx, exc, "outside the training steps"))


def said_by_another_rank(exc: Step1X3DError) -> bool:
    """True when this process fails without printing ``exc`` because another rank of the run says it: a
    :class:`TrainError` knows (agreed through the store); any other error came before the process group
    existed, the same on every rank, and under torchrun rank 0 says it. When True it returns only after a
    pause: torchrun stops the other workers as soon as one exits, and the one that speaks must print first."""
    if isinstance(exc, TrainError):
        silent = exc.reported_elsewhere
    else:
        silent = int(os.environ.get("WORLD_SIZE") or 1) > 1 and int(os.environ.get("RANK") or 0) != 0
    if silent:
        time.sleep(LINGER_S)
    return silent


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


__all__ = ["GRACE_S", "SigtermGuard", "Terminated", "TrainError", "is_peer_failure", "resume_hint", "run_failed",
           "said_by_another_rank", "setup_failed", "sigterm_raises"]

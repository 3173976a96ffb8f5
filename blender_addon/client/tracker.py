"""A pure state machine for one job, fed with events: what the UI shows.

No sockets and no clock of its own (callers pass ``now``), so it is trivially
testable and the Blender timer, the headless API and the CLI all share it.

States: connecting -> queued -> running -> done, or failed / cancelled, and
offline while the server is silent (left again as soon as it answers).
Failures come with ONE human sentence in :attr:`JobTracker.error`, from the one
wording module (:mod:`blender_addon.core.wording`). Only the tracker's own methods
change its fields; the session calls :meth:`JobTracker.fail` for failures it decides.
"""

from __future__ import annotations

import time

from ..core import wording
from ..protocol import messages as m
from .events import (
    Accepted,
    ErrorEvent,
    Event,
    Offline,
    Progress,
    Rejected,
    Result,
    ResultReady,
    ServerShutdown,
    StateChanged,
    Welcome,
)

CONNECTING = "connecting"
QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
OFFLINE = "offline"
FINAL_STATES = frozenset({DONE, FAILED, CANCELLED})

class JobTracker:
    def __init__(
        self, job_id: str, *, address: str = "", no_answer_s: float = 10.0, now: float | None = None,
        address_hint: str = "",
    ) -> None:
        self.job_id = job_id
        self.address = address
        self.address_hint = address_hint  # where the user fixes a wrong address (wording.offline)
        self.no_answer_s = no_answer_s
        self.state = CONNECTING
        self.stage = ""
        self.step = 0
        self.total = 0
        self.fraction = 0.0
        self.eta_s: float | None = None
        self.progress_message = ""
        self.queue_position: int | None = None
        self.error = ""  # the one sentence, when failed/cancelled/offline
        self.error_code = ""
        self.retryable = False
        self.retry_after_s: float | None = None
        self.result_ready = False
        self.result: Result | None = None
        self.welcome: Welcome | None = None
        self._state_before_offline = CONNECTING
        self._created = time.monotonic() if now is None else now
        self._heard_of_job = False
        self.heard_from_server = False  # any message at all: silence after one is "lost", before one "offline"

    # ------------------------------------------------------------------ queries

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def status_line(self) -> str:
        """A short status for a progress bar or a panel."""
        if self.state == RUNNING:
            eta = f", about {format_eta(self.eta_s)} left" if self.eta_s is not None else ""
            step = f" {self.step}/{self.total}" if self.total > 1 else ""
            return f"{self.stage or 'working'}{step} ({self.fraction * 100:.0f}%{eta})"
        if self.state == QUEUED:
            ahead = self.queue_position or 0
            return f"queued ({ahead} job{'s' if ahead != 1 else ''} ahead)" if ahead else "queued"
        if self.state in (FAILED, CANCELLED, OFFLINE):
            return self.error
        return self.state

    # ------------------------------------------------------------------ transitions

    def _fail(self, code: str, message: str, *, retryable: bool = False, retry_after_s: float | None = None) -> None:
        if self.finished:
            return  # exactly one final state
        self.state = CANCELLED if code == "cancelled" else FAILED
        self.error_code = code
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.error = wording.failure_sentence(code, message, address=self.address, retry_after_s=retry_after_s)

    def fail(self, code: str, sentence: str) -> None:
        """A failure the client decides (the server never answered, a lost connection): ``sentence`` as it is."""
        if not self.finished:
            self.state = CANCELLED if code == "cancelled" else FAILED
            self.error_code = code
            self.error = sentence

    def handle(self, event: Event) -> bool:
        """Apply one event; returns True when it concerned this job (or the server as a whole)."""
        if isinstance(event, Offline):
            if not self.finished and self.state != OFFLINE:
                self._go_offline(self.address or event.address, event.silent_s)
            return True
        self.heard_from_server = True
        if self.state == OFFLINE:  # the server answers again
            self.state = self._state_before_offline
            self.error = self.error_code = ""
        if isinstance(event, Welcome):
            self.welcome = event
            return True
        if isinstance(event, ServerShutdown):
            return True  # the state message that follows says what happens to the job
        job_id = getattr(event, "job_id", None)
        if isinstance(event, ErrorEvent):
            if job_id is None and event.code in ("auth_refused", "handshake_failed", "version_mismatch"):
                self._fail(event.code, event.message)
                return True
            if job_id != self.job_id or event.code == "not_ready":
                return False
            self._fail(event.code, event.message, retryable=event.retryable)
            return True
        if job_id != self.job_id:
            return False
        self._heard_of_job = True
        if isinstance(event, Accepted):
            if self.state == CONNECTING:
                self.state = QUEUED
            self.queue_position = event.queue_position
        elif isinstance(event, Rejected):
            self._fail(event.code, event.message, retry_after_s=event.retry_after_s, retryable=event.code == "busy")
        elif isinstance(event, StateChanged):
            self._on_state(event)
        elif isinstance(event, Progress):
            if not self.finished:
                self.state = RUNNING
                self.stage, self.step, self.total = event.stage, event.step, event.total
                self.fraction = max(0.0, min(1.0, event.fraction))
                self.eta_s = event.eta_s
                self.progress_message = event.message
        elif isinstance(event, ResultReady):
            self.result_ready = True
            if not self.finished:
                self.state = RUNNING
                self.stage, self.fraction, self.eta_s = "downloading", 1.0, None
        elif isinstance(event, Result):
            self.result = event
            if not self.finished:
                self.state = DONE
                self.fraction = 1.0
        return True

    def _on_state(self, event: StateChanged) -> None:
        if event.state == m.QUEUED:
            if not self.finished:
                self.state = QUEUED
                self.queue_position = event.queue_position
        elif event.state == m.RUNNING:
            if not self.finished:
                self.state = RUNNING
        elif event.state == m.DONE:
            self.result_ready = True  # the result itself still has to be fetched
        elif event.state == m.CANCELLED:
            self._fail("cancelled", event.message or "")
        elif event.state in (m.FAILED, m.EXPIRED):
            self._fail(event.code or event.state, event.message or "", retryable=bool(event.retryable))

    def tick(self, now: float | None = None) -> None:
        """Time-based transition: no word about the job from the server within ``no_answer_s``.

        The job goes offline (not final: it recovers if the server answers later);
        callers that cannot wait give up with :attr:`error` as the reason.
        """
        now = time.monotonic() if now is None else now
        if not self._heard_of_job and not self.finished and self.state != OFFLINE:
            if now - self._created > self.no_answer_s:
                self._go_offline(self.address, now - self._created)

    def _go_offline(self, address: str, silent_s: float) -> None:
        self._state_before_offline = self.state
        self.state = OFFLINE
        self.error_code = "offline"
        if self.heard_from_server:
            self.error = wording.lost(address, waiting=True)
        else:
            self.error = wording.offline(address, self.address_hint)

    def note_waiting(self, message: str) -> None:
        """The server answered "busy" and the caller will resubmit: queued, not failed."""
        self._heard_of_job = True
        if not self.finished:
            self.state = QUEUED
            self.queue_position = None
            self.progress_message = message

    def note_heard(self) -> None:
        """The server said something (even what this tracker ignores): it is there."""
        self.heard_from_server = True

    def mark_cancelled(self) -> None:
        self._fail("cancelled", "")

    def mark_lost(self, silent_s: float) -> None:
        """Given up on a server that went silent mid-job."""
        self.fail("offline", wording.lost(self.address, silent_s=silent_s))

    def mark_offline(self) -> None:
        """Given up on a server that never answered."""
        self.fail("offline", wording.offline(self.address, self.address_hint))


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{sec:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}"


__all__ = [
    "CANCELLED",
    "CONNECTING",
    "DONE",
    "FAILED",
    "FINAL_STATES",
    "JobTracker",
    "OFFLINE",
    "QUEUED",
    "RUNNING",
    "format_eta",
]

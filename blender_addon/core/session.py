"""One job, driven by a non-blocking poll step: the heart of the add-on.

No threads: :meth:`JobSession.step` polls the connection (``poll(0)`` from
Blender's timer, or with a short timeout from the blocking API), feeds the
events to the client's :class:`~blender_addon.client.tracker.JobTracker` and
returns a :class:`SessionView`. libzmq's own I/O thread does the waiting.

What the session adds to the tracker: it submits only after ``welcome`` (so an
absent server is reported as such: a DEALER "connects" to nothing without
complaint), fetches the result when it is announced, gives up on a cancel the
server never confirms, and turns a server that went silent mid-job into one
sentence after a grace period instead of waiting for ever.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..client.events import Result, ResultReady, Welcome
from ..client.tracker import CANCELLED, DONE, FAILED, FINAL_STATES, OFFLINE, QUEUED, RUNNING, JobTracker
from ..client.tracker import format_eta as _format_eta
from . import wording

__all__ = ["CANCELLED", "DONE", "FAILED", "OFFLINE", "QUEUED", "RUNNING", "JobSession", "SessionView", "wait"]


class Connection(Protocol):
    """What the session needs of ``blender_addon.client.connection.ServerConnection``."""

    def hello(self) -> None: ...
    def submit(self, job_id: str, images: Any, settings: Any, *, image_names: list[str] | None = None,
               mesh: dict[str, Any] | None = None, want_glb: bool = False) -> None: ...
    def cancel(self, job_id: str) -> None: ...
    def fetch(self, job_id: str) -> None: ...
    def ping(self, token: str = "") -> None: ...
    def poll(self, timeout_ms: int = 0) -> list[Any]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class JobRequestSpec:
    job_id: str
    images: list[bytes]
    settings: dict[str, Any]
    image_names: list[str] = field(default_factory=list)
    mesh: dict[str, Any] | None = None  # texture-only jobs, glTF frame


@dataclass
class ServerInfo:
    version: str = ""
    backend: str = ""
    device: str = ""
    backends: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)

    def line(self, status: dict[str, Any] | None = None) -> str:
        """``Connected: inflate on cuda:0 (NVIDIA H100), idle`` -- plus the queue when a ping told us."""
        if self.device == "loading":  # the server answers while its worker still loads the backend
            text = f"Connected: {self.backend or 'unknown backend'} (still loading)"
        else:
            text = f"Connected: {self.backend or 'unknown backend'} on {self.device or 'unknown device'}"
        if status:
            queued = int(status.get("queued", 0) or 0)
            busy = bool(status.get("running"))
            text += ", busy" if busy else ", idle"
            if queued:
                text += f", {queued} queued"
        return text


def server_info(ev: Welcome) -> ServerInfo:
    """The status-line facts of a ``welcome``."""
    return ServerInfo(
        version=str(ev.server_version),
        backend=str(ev.active_backend),
        device=str(ev.device),
        backends=dict(ev.backends or {}),
        limits=dict(ev.limits or {}),
    )


@dataclass
class SessionView:
    """A snapshot for the panel; plain values only, safe to copy onto WindowManager properties."""

    state: str = "connecting"
    stage: str = ""
    fraction: float = 0.0
    eta_s: float | None = None
    message: str = ""  # the failure sentence (failed, cancelled, offline) or the latest progress message
    queue_position: int = 0

    @property
    def terminal(self) -> bool:
        return self.state in FINAL_STATES

    def progress_text(self) -> str:
        if self.state == "connecting":
            return "Connecting…"
        if self.state == QUEUED:
            return f"Queued ({self.queue_position} ahead)" if self.queue_position else "Queued"
        if self.state == RUNNING:
            stage = self.stage.replace("_", " ").capitalize() or "Working"
            eta = f", about {format_eta(self.eta_s)} left" if self.eta_s is not None else ""
            return f"{stage} {self.fraction * 100:.0f}%{eta}"
        if self.state == DONE:
            return "Done."
        return self.message or self.state.capitalize()


def format_eta(seconds: float | None) -> str:
    return _format_eta(seconds)


class JobSession:
    """Submit one job and follow it to a final state without ever blocking for long."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        request: JobRequestSpec,
        *,
        address: str,
        offline_timeout_s: float = 5.0,
        stall_timeout_s: float = 60.0,
        cancel_grace_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self.request = request
        self.address = address
        self.stall_timeout_s = stall_timeout_s
        self.cancel_grace_s = cancel_grace_s
        self._clock = clock
        self.tracker = JobTracker(request.job_id, address=address, no_answer_s=offline_timeout_s, now=clock())
        self._conn: Connection | None = None
        self._submitted = False
        self._fetched = False
        self._offline_since: float | None = None
        self._cancel_requested_at: float | None = None

    @property
    def job_id(self) -> str:
        return self.request.job_id

    @property
    def server(self) -> ServerInfo | None:
        return server_info(self.tracker.welcome) if self.tracker.welcome is not None else None

    @property
    def result(self) -> Result | None:
        return self.tracker.result

    @property
    def notes(self) -> list[str]:
        return list(self.tracker.result.notes) if self.tracker.result is not None else []

    @property
    def view(self) -> SessionView:
        t = self.tracker
        failed = t.state in (FAILED, CANCELLED, OFFLINE)
        return SessionView(
            state=t.state,
            stage=t.stage,
            fraction=t.fraction,
            eta_s=t.eta_s,
            message=t.error if failed else t.progress_message,
            queue_position=t.queue_position or 0,
        )

    def start(self) -> None:
        try:
            self._conn = self._connect()
            self._conn.hello()
        except Exception as exc:  # a malformed address or key file: the socket cannot even be made
            self._fail_now(wording.sentence(f"Cannot connect to {self.address}: {exc}"))

    def step(self, timeout_ms: int = 0) -> SessionView:
        """Poll once, update the tracker and return :attr:`view`. Harmless after the job ended."""
        t = self.tracker
        if t.finished or self._conn is None:
            return self.view
        try:
            events = self._conn.poll(timeout_ms)
            for event in events:
                t.handle(event)
                if isinstance(event, Welcome) and not self._submitted and self._cancel_requested_at is None:
                    self._submit()
                if (isinstance(event, ResultReady) or t.result_ready) and not self._fetched and t.result is None:
                    self._fetched = True
                    self._conn.fetch(self.job_id)
                if t.finished:
                    break
        except Exception as exc:  # a closed connection or an undecodable reply: one sentence, no traceback
            self._fail_now(wording.sentence(f"Lost the connection to the server: {exc}"))
            return self.view
        self._check_timeouts(self._clock())
        return self.view

    def cancel(self) -> None:
        """Ask the server to cancel; ends as cancelled when it confirms (or after a short grace period)."""
        if self.tracker.finished:
            return
        if self._conn is None or not self._submitted:  # nothing on the server to cancel
            self.tracker.mark_cancelled()
            return
        if self._cancel_requested_at is None:
            self._cancel_requested_at = self._clock()
            try:
                self._conn.cancel(self.job_id)
            except Exception:
                self.tracker.mark_cancelled()

    def close(self) -> None:
        """Close the socket (LINGER 0 in the client: never blocks). Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _submit(self) -> None:
        assert self._conn is not None
        r = self.request
        self._submitted = True
        try:
            self._conn.submit(r.job_id, list(r.images), dict(r.settings), image_names=list(r.image_names), mesh=r.mesh)
        except Exception as exc:  # client-side checks (job id, queue full) raise before sending
            self._fail_now(wording.sentence(str(exc)))

    def _check_timeouts(self, now: float) -> None:
        t = self.tracker
        if self._cancel_requested_at is not None and now - self._cancel_requested_at > self.cancel_grace_s:
            t.mark_cancelled()  # the server may be gone; do not keep the artist waiting
            return
        t.tick(now)
        if t.state != OFFLINE:
            self._offline_since = None
            return
        if t.welcome is None:
            # Never heard from the server at all within the connect timeout: it is not running
            # (or the address is wrong). Say so now rather than wait for it.
            self._fail_now(wording.offline(self.address), code="offline")
        elif self._offline_since is None:
            self._offline_since = now
            t.error = wording.lost(self.address, waiting=True)
        elif now - self._offline_since > self.stall_timeout_s:
            self._fail_now(wording.lost(self.address), code="offline")

    def _fail_now(self, sentence: str, *, code: str = "client") -> None:
        """A failure the client decides (the tracker only knows the server's failures)."""
        t = self.tracker
        if not t.finished:
            t.state = FAILED
            t.error = sentence
            t.error_code = code


def wait(
    session: JobSession,
    *,
    poll_ms: int = 50,
    progress: Callable[[SessionView], None] | None = None,
    timeout_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SessionView:
    """Drive :meth:`JobSession.step` until the job ends (the blocking API and background operators).

    ``poll_ms`` blocks inside libzmq's poll, so the loop waits without a Python thread.
    """
    deadline = None if timeout_s is None else clock() + timeout_s
    last: tuple[str, float, str] | None = None
    while True:
        view = session.step(poll_ms)
        key = (view.state, round(view.fraction, 3), view.stage)
        if progress is not None and key != last:
            progress(view)
            last = key
        if view.terminal:
            return view
        if deadline is not None and clock() > deadline:
            session.cancel()
            deadline = None  # the cancel grace period ends the loop

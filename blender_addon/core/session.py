"""One job, driven by a non-blocking poll step: the add-on's policy on top of the client's session.

No threads: :meth:`JobSession.step` polls the connection (``poll(0)`` from
Blender's timer, or with a short timeout from the blocking API) and returns a
:class:`SessionView` for the panel. libzmq's own I/O thread does the waiting.

The protocol reactions (fetch when ready, re-attach after an outage, resubmit
to a restarted server, close the job once fetched) live in
:class:`blender_addon.client.session.JobSession`. What the add-on adds: a
server that never answered is reported at once with the exact fix, one that
went silent mid-job after a grace period; a cancel the server never confirms
still ends the job; and every failure, even a client bug, is one sentence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..client.connection import ServerConnection
from ..client.events import Result, Welcome
from ..client.session import JobSession as ClientSession
from ..client.tracker import CANCELLED, DONE, FAILED, FINAL_STATES, OFFLINE, QUEUED, RUNNING, JobTracker
from ..client.tracker import format_eta as _format_eta
from . import wording

__all__ = [
    "CANCELLED", "DONE", "FAILED", "OFFLINE", "QUEUED", "RUNNING",
    "JobSession", "SessionView", "cancel_and_wait", "wait",
]


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
    content_filter: bool = False  # the server refuses images its content filter flags

    def line(self, status: dict[str, Any] | None = None) -> str:
        """``Connected: inflate on cuda:0 (NVIDIA H100), idle`` -- plus the queue when a ping told us."""
        if self.device == "loading":  # the server answers while its worker still loads the backend
            text = f"Connected: {self.backend or 'unknown backend'} (still loading)"
        else:
            text = f"Connected: {self.backend or 'unknown backend'} on {self.device or 'unknown device'}"
        if status:
            queued = int(status.get("queued", 0) or 0)
            text += ", busy" if status.get("running") else ", idle"
            if queued:
                text += f", {queued} queued"
        if self.content_filter:
            text += "; content filter on"
        return text


def server_info(ev: Welcome) -> ServerInfo:
    """The status-line facts of a ``welcome``."""
    return ServerInfo(
        version=str(ev.server_version),
        backend=str(ev.active_backend),
        device=str(ev.device),
        backends=dict(ev.backends or {}),
        limits=dict(ev.limits or {}),
        content_filter=bool(ev.content_filter),
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
        connect: Callable[[], ServerConnection],
        request: JobRequestSpec,
        *,
        address: str,
        offline_timeout_s: float = 5.0,
        stall_timeout_s: float = 60.0,
        cancel_grace_s: float = 3.0,
    ) -> None:
        self._connect = connect
        self.request = request
        self.address = address
        self.offline_timeout_s = offline_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.cancel_grace_s = cancel_grace_s
        # Replaced by the client session's tracker in start(); until then it only records a failure to start.
        self.tracker = JobTracker(request.job_id, address=address, no_answer_s=offline_timeout_s)
        self._inner: ClientSession | None = None
        self._conn: ServerConnection | None = None
        self._cancel_requested_at: float | None = None
        self._cancel_asked = False  # by the artist (or a script): only then is "cancelled" the whole truth

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
        if t.state == CANCELLED and not self._cancel_asked:
            # Nobody here asked: the server cancelled it itself, which it does when it shuts down.
            return SessionView(state=FAILED, message=wording.stopped(self.address))
        return SessionView(
            state=t.state,
            stage=t.stage,
            fraction=t.fraction,
            eta_s=t.eta_s,
            message=t.error if failed else t.progress_message,
            queue_position=t.queue_position or 0,
        )

    def start(self) -> None:
        r = self.request
        try:
            self._conn = self._connect()
            self._inner = ClientSession(
                self._conn, r.images, r.settings, job_id=r.job_id, image_names=list(r.image_names), mesh=r.mesh,
                no_answer_s=self.offline_timeout_s,
            )
            self.tracker = self._inner.tracker
            self._inner.start()
        except Exception as exc:  # a malformed address or key file (over-limit jobs fail in the tracker)
            self._fail_now(wording.sentence(f"Cannot send the job to {self.address}: {exc}"))

    def step(self, timeout_ms: int = 0) -> SessionView:
        """Poll once and return :attr:`view`. Harmless after the job ended."""
        if self.tracker.finished or self._inner is None:
            return self.view
        try:
            self._inner.step(timeout_ms)
        except Exception as exc:  # a closed connection or an undecodable reply: one sentence, no traceback
            self._fail_now(wording.sentence(f"Lost the connection to the server: {exc}"))
            return self.view
        self._apply_policy(time.monotonic())  # the client session's clock too
        return self.view

    def cancel(self) -> None:
        """Ask the server to cancel; ends as cancelled when it confirms (or after a short grace period)."""
        if self.tracker.finished:
            return
        self._cancel_asked = True
        if self._inner is None or not self._inner.heard_from_server:
            self.tracker.mark_cancelled()  # no server has answered: there is nothing to cancel there
            return
        if self._cancel_requested_at is None:
            self._cancel_requested_at = time.monotonic()
            try:
                self._inner.cancel()
            except Exception:
                self.tracker.mark_cancelled()

    def close(self) -> None:
        """Close the socket and its context (LINGER 0 in the client: never blocks). Idempotent."""
        conn, self._conn, self._inner = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _apply_policy(self, now: float) -> None:
        t = self.tracker
        if self._cancel_requested_at is not None and now - self._cancel_requested_at > self.cancel_grace_s:
            t.mark_cancelled()  # the server may be gone; do not keep the artist waiting
            return
        if t.state != OFFLINE or self._inner is None:
            return
        if not self._inner.heard_from_server:
            # Not a word within the connect timeout: no server there (or a wrong address). Say so now.
            self._fail_now(wording.offline(self.address), code="offline")
            return
        silent_since = self._inner.offline_since or now
        if now - silent_since > self.stall_timeout_s:
            self._fail_now(wording.lost(self.address), code="offline")
        else:
            t.error = wording.lost(self.address, waiting=True)

    def _fail_now(self, sentence: str, *, code: str = "client") -> None:
        """A failure the add-on decides (the tracker only knows the server's failures)."""
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


def cancel_and_wait(session: JobSession, seconds: float = 2.0) -> None:
    """Cancel and give the server a moment to confirm before the socket closes (LINGER 0 drops unsent data).

    For a script interrupted with Ctrl+C; ``unregister()`` does not wait (Blender must quit at once).
    """
    session.cancel()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end and not session.step(50).terminal:
            pass
    except KeyboardInterrupt:
        return

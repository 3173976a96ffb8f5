"""One job, end to end, with non-blocking steps: THE client session (add-on panel, headless API, ``run_job``, CLI).

:class:`JobSession` is the poll step the Blender timer calls (``step(0)``) and the
blocking helpers call in a loop (:func:`wait`, :func:`run_job`): same code, same
behaviour, same sentences. It submits once the server's ``welcome`` has arrived (so
the job is checked against the limits of the server it goes to), announces large
uploads with ``reserve``, waits out "busy" and resubmits, fetches the result when it
is ready and closes the job, re-attaches after the server was unreachable or
restarted, and resubmits (same id, so at most once) when a restarted server no
longer knows the job.

Its policy, with the timeouts as constructor parameters: a server that never answered
within ``no_answer_s`` fails the job at once with the exact fix; one that went silent
mid-job gets ``lost_after_s`` to come back; a cancel the server never confirms still
ends the job after ``cancel_grace_s``; and every failure, even a client bug, is one
sentence from :mod:`blender_addon.core.wording`. No threads: libzmq's I/O thread waits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..core import wording
from ..core.naming import new_job_id
from ..protocol.errors import ERROR_CODES, Step1X3DError
from ..protocol.preflight import SubmitRefused
from ..protocol.settings import JobSettings
from .connection import DEFAULT_ADDRESS, ServerConnection
from .curve import CurveKeys
from .events import (
    ErrorEvent,
    Event,
    Offline,
    Reconnected,
    Rejected,
    Reserved,
    Result,
    ResultReady,
    StateChanged,
    Welcome,
)
from .tracker import CANCELLED, DONE, FAILED, FINAL_STATES, OFFLINE, QUEUED, RUNNING, JobTracker, format_eta

MAX_RESUBMITS = 3
BUSY_RETRY_MAX_S = 5.0


class JobFailed(Step1X3DError):
    """A job that did not produce a result (:func:`run_job`); ``str(exc)`` is one sentence, ``code`` the wire's.

    A subclass because callers catch this family alone; ``state`` is how the job ended (failed, cancelled).
    """

    def __init__(self, message: str, code: str = "internal_error", state: str = FAILED) -> None:
        # A newer server may send a code this client does not know: keep the sentence, not the code.
        super().__init__(message, code if code in ERROR_CODES else "internal_error")
        self.state = state


@dataclass(frozen=True)
class JobRequestSpec:
    """What one job sends: images (encoded files, front view first), settings, names, and a mesh to paint."""

    job_id: str
    images: list[bytes]
    settings: JobSettings | dict[str, Any]
    image_names: list[str] = field(default_factory=list)
    mesh: dict[str, Any] | None = None  # texture-only jobs, glTF frame
    want_glb: bool = False


@dataclass
class ServerInfo:
    """The status-line facts of a ``welcome``."""

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
    """A snapshot for a panel or a progress callback; plain values only (safe to copy onto Blender properties)."""

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


Connect = Callable[[], ServerConnection]


class JobSession:
    def __init__(
        self,
        connection: ServerConnection | Connect,
        images: Sequence[bytes],
        settings: JobSettings | dict[str, Any],
        *,
        job_id: str | None = None,
        image_names: list[str] | None = None,
        mesh: dict[str, Any] | None = None,
        want_glb: bool = False,
        address: str = "",
        address_hint: str = "",
        no_answer_s: float = 10.0,
        lost_after_s: float = 60.0,
        cancel_grace_s: float = 3.0,
        retry_busy_until: float | None = None,
        close_when_fetched: bool = True,
        on_update: Callable[[JobTracker], None] | None = None,
    ) -> None:
        """``connection``: a connection, or a factory called by :meth:`start` (so no socket exists before).

        ``no_answer_s``: fail when no server answered this long after the start; ``lost_after_s``: how
        long a server that went silent mid-job may take to come back; ``cancel_grace_s``: how long a
        cancel waits for the server's confirmation; ``retry_busy_until``: a monotonic deadline for
        waiting out "busy" (None: a busy server fails the job); ``address_hint``: where the user fixes
        a wrong address, for the sentence (e.g. ``wording.ADDON_ADDRESS_HINT``).
        """
        self._connect: Connect | None = None
        self._conn: ServerConnection | None = None
        if isinstance(connection, ServerConnection):
            self._conn = connection
        else:
            self._connect = connection
        self.address = address or (self._conn.address if self._conn is not None else "")
        self.request = JobRequestSpec(
            job_id or new_job_id(), list(images), settings, list(image_names or []), mesh, bool(want_glb)
        )
        self.job_id = self.request.job_id
        self.no_answer_s = no_answer_s
        self.lost_after_s = lost_after_s
        self.cancel_grace_s = cancel_grace_s
        self.retry_busy_until = retry_busy_until
        self.close_when_fetched = close_when_fetched
        self.on_update = on_update  # called after every event, so no stage is skipped in a batch
        self.tracker = JobTracker(self.job_id, address=self.address, no_answer_s=no_answer_s, address_hint=address_hint)
        self._started_at = time.monotonic()
        self._fetch_sent = False
        self._resubmit_at: float | None = None
        self._resubmits = 0
        self._was_offline = False
        self._awaiting_welcome = False  # the submit waits for the limits of the server it goes to
        self._prepared: list[Any] | None = None  # a large submit waiting for the server's "reserved"
        self._cancel_requested_at: float | None = None
        self._cancel_asked = False  # by the user: only then is "cancelled" the whole truth
        self.offline_since: float | None = None

    # ------------------------------------------------------------------ queries

    @property
    def connection(self) -> ServerConnection:
        if self._conn is None:
            raise Step1X3DError("the session has no connection (not started, or closed)", "internal_error")
        return self._conn

    @property
    def heard_from_server(self) -> bool:
        return self.tracker.heard_from_server

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
        if t.state == CANCELLED and not self._cancel_asked:
            # Nobody here asked: the server cancelled it itself, which it does when it shuts down.
            return SessionView(state=FAILED, message=wording.stopped(self.address))
        failed = t.state in (FAILED, CANCELLED, OFFLINE)
        return SessionView(
            state=t.state,
            stage=t.stage,
            fraction=t.fraction,
            eta_s=t.eta_s,
            message=t.error if failed else t.progress_message,
            queue_position=t.queue_position or 0,
        )

    # ------------------------------------------------------------------ driving

    def start(self) -> None:
        """Connect (if given a factory) and say hello; the job is submitted when the welcome arrives."""
        self._started_at = time.monotonic()
        try:
            if self._conn is None and self._connect is not None:
                self._conn = self._connect()
                self.address = self.address or self._conn.address
                self.tracker.address = self.address
            self.connection.hello()
            if self.connection.welcome is not None:
                self._submit()  # this connection already knows the server's limits
            else:
                self._awaiting_welcome = True
        except Exception as exc:  # a malformed address or key file (over-limit jobs fail in the tracker)
            self.tracker.fail("internal_error", wording.sentence(f"Cannot send the job to {self.address}: {exc}"))

    def step(self, timeout_ms: int = 0) -> SessionView:
        """One poll: read what arrived (waiting at most ``timeout_ms``), update the tracker, react. Harmless once ended."""
        self.poll(timeout_ms)
        return self.view

    def poll(self, timeout_ms: int = 0) -> list[Event]:
        """:meth:`step`, returning the events it handled instead of the view (for callers that watch the wire)."""
        if self.tracker.finished or self._conn is None:
            return []
        try:
            return self._step(timeout_ms)
        except Exception as exc:  # a closed connection or a client bug: one sentence, no traceback
            self.tracker.fail("internal_error", wording.sentence(f"Lost the connection to the server: {exc}"))
            return []

    def cancel(self) -> None:
        """Ask the server to cancel; ends as cancelled when it confirms (or after ``cancel_grace_s``)."""
        if self.tracker.finished:
            return
        self._cancel_asked = True
        if self._awaiting_welcome or self._prepared is not None or not self.heard_from_server:
            # Never sent (or nobody there): nothing to cancel on the server, and never send it now
            # (room the server reserved for the upload is given back when its reservation expires).
            self._awaiting_welcome = False
            self._prepared = None
            self.tracker.mark_cancelled()
            return
        if self._cancel_requested_at is None:
            self._cancel_requested_at = time.monotonic()
            try:
                self.connection.cancel(self.job_id)
            except Step1X3DError:
                self.tracker.mark_cancelled()

    def close(self) -> None:
        """Close the connection (LINGER 0: never blocks). Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing must never raise into the host application
                pass

    # ------------------------------------------------------------------ internals

    def _step(self, timeout_ms: int) -> list[Event]:
        conn = self.connection
        events = conn.poll(timeout_ms)
        now = time.monotonic()
        for event in events:
            self._react(event, now)
            if self.on_update is not None:
                self.on_update(self.tracker)
        if self._was_offline and conn.seconds_since_last_message() < conn.offline_after_s:
            # The server answers again (maybe a restarted one; its keep-alive pong is not an event).
            self._reattach()
        if self._resubmit_at is not None and now >= self._resubmit_at and not self.tracker.finished:
            self._resubmit_at = None
            self._submit()
        self.tracker.tick(now)
        self.offline_since = (self.offline_since or now) if self.tracker.state == OFFLINE else None
        self._apply_policy(now)
        return events

    def _apply_policy(self, now: float) -> None:
        t = self.tracker
        if self._cancel_requested_at is not None and now - self._cancel_requested_at > self.cancel_grace_s:
            t.mark_cancelled()  # the server may be gone; do not keep the user waiting
            return
        if t.finished:
            return
        if not self.heard_from_server:
            if now - self._started_at >= self.no_answer_s:
                t.mark_offline()  # not a word: no server there (or a wrong address); say so now
            return
        if self.offline_since is not None and now - self.offline_since >= self.lost_after_s:
            t.mark_lost(self.connection.seconds_since_last_message())

    def _submit(self) -> None:
        r = self.request
        try:
            frames = self.connection.submit(
                self.job_id, r.images, r.settings,
                image_names=r.image_names or None, mesh=r.mesh, want_glb=r.want_glb, prepare_only=True,
            )
        except SubmitRefused as exc:
            # Refused here, for the limits the server advertised: nothing was sent. The job ends as
            # if the server had rejected it (same code, one sentence), so every caller shows it alike.
            self.tracker.handle(Rejected(self.job_id, exc.code, exc.message))
            self._resubmit_at = None
            return
        welcome = self.connection.welcome
        threshold = welcome.reserve_above_bytes if welcome is not None else None
        size = sum(len(memoryview(f).cast("B")) for f in frames[1:])  # what the server counts: the parts
        if threshold is not None and size > threshold:
            # A large upload waits until the server holds room for it: several at once then never
            # exceed its byte budget, and a refused one ("busy") costs no upload.
            self._prepared = frames
            self.connection.reserve(self.job_id, size)
        else:
            self.connection.send_prepared(frames)

    def _reattach(self) -> None:
        """Say hello and re-subscribe; a server that lost the job answers unknown_job -> resubmit."""
        self._was_offline = False
        if self.tracker.finished:
            return
        self._fetch_sent = self.tracker.result is not None  # a fetch in flight may have been lost
        self.connection.hello()
        if not self._awaiting_welcome:  # else the job was never sent: the welcome submits it
            self.connection.attach(self.job_id)

    def _react(self, event: Event, now: float) -> None:
        tracker = self.tracker
        if isinstance(event, Offline):
            self._was_offline = True
        else:
            tracker.note_heard()
        if isinstance(event, Reserved) and event.job_id == self.job_id:
            tracker.handle(event)  # the server has heard of the job
            frames, self._prepared = self._prepared, None
            if frames is not None and not tracker.finished:
                self.connection.send_prepared(frames)
            return
        if isinstance(event, Reconnected):
            # A new connection, or a new server instance behind the old one (a restart shorter than
            # the offline timeout never looks offline): the server may not know we follow the job.
            self._reattach()
        if isinstance(event, Welcome) and self._awaiting_welcome:
            tracker.handle(event)
            self._awaiting_welcome = False
            if not tracker.finished:  # e.g. cancelled before the server answered
                self._submit()
            return
        if isinstance(event, Rejected) and event.job_id == self.job_id and event.code == "busy":
            if self.retry_busy_until is not None and now < self.retry_busy_until:
                # The server's hint is an estimate; retrying a little early costs one more "busy".
                wait_s = min(max(event.retry_after_s or 1.0, 0.5), BUSY_RETRY_MAX_S)
                self._resubmit_at = min(now + wait_s, self.retry_busy_until)
                tracker.note_waiting(event.message)
                return  # not a failure yet: we will try again
        if (
            isinstance(event, ErrorEvent)
            and event.job_id == self.job_id
            and event.code == "unknown_job"
            and not tracker.result_ready
            and self._resubmits < MAX_RESUBMITS
        ):
            self._resubmits += 1  # a restarted server lost the job: submitting the same id again is safe
            self._submit()
            return
        tracker.handle(event)
        ours = getattr(event, "job_id", None) == self.job_id
        if ours and not self._fetch_sent and (
            isinstance(event, ResultReady) or (isinstance(event, StateChanged) and event.state == DONE)
        ):
            self._fetch_sent = True
            self.connection.fetch(self.job_id)
        if ours and isinstance(event, Result) and self.close_when_fetched:
            self.connection.close_job(self.job_id)


def wait(
    session: JobSession,
    *,
    poll_ms: int = 50,
    progress: Callable[[SessionView], None] | None = None,
    timeout_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SessionView:
    """Drive :meth:`JobSession.step` until the job ends; ``timeout_s`` cancels it (then the cancel grace ends it).

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


ProgressCallback = Callable[[JobTracker], None]


def run_job(
    address: str,
    images: Sequence[bytes],
    settings: JobSettings | dict[str, Any],
    *,
    on_progress: ProgressCallback | None = None,
    timeout_s: float = 3600.0,
    mesh: dict[str, Any] | None = None,
    want_glb: bool = False,
    image_names: list[str] | None = None,
    job_id: str | None = None,
    curve: CurveKeys | None = None,
    connect_timeout_s: float = 10.0,
    offline_grace_s: float = 30.0,
    wait_if_busy_s: float = 600.0,
) -> Result:
    """Submit a job to the server at ``address`` and block until its result arrives (a :class:`JobSession`).

    ``on_progress(tracker)`` is called after every event from the server. Raises :class:`JobFailed`
    with one sentence on any failure; Ctrl-C cancels the job on the server before re-raising.
    """
    address = address or DEFAULT_ADDRESS
    start = time.monotonic()
    with ServerConnection(address, curve=curve, offline_after_s=min(5.0, connect_timeout_s)) as conn:
        session = JobSession(
            conn, images, settings, job_id=job_id, image_names=image_names, mesh=mesh, want_glb=want_glb,
            no_answer_s=connect_timeout_s, lost_after_s=offline_grace_s, retry_busy_until=start + wait_if_busy_s,
            on_update=on_progress,
        )
        session.start()
        try:
            while not session.tracker.finished:
                session.step(100)
                if time.monotonic() - start > timeout_s:
                    session.cancel()
                    raise JobFailed(wording.timed_out(timeout_s), "timeout")
        except KeyboardInterrupt:
            cancel_and_wait(session, 2.0)
            raise
        view, tracker = session.view, session.tracker
        if tracker.state != DONE or tracker.result is None:
            raise JobFailed(view.message or "The job ended without a result.", tracker.error_code, tracker.state)
        return tracker.result


__all__ = [
    "JobFailed", "JobRequestSpec", "JobSession", "ServerInfo", "SessionView", "cancel_and_wait", "run_job",
    "server_info", "wait",
]

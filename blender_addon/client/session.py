"""Drive one job end to end with non-blocking steps, and a blocking ``run_job`` built on them.

:class:`JobSession` is the poll step the Blender timer calls (``step(0)``) and
that ``run_job`` calls in a loop (``step(100)``): same code, same behaviour.
It fetches the result when it is ready, waits out "busy" and resubmits,
re-attaches after the server was unreachable, and resubmits (same id, so at
most once) when a restarted server no longer knows the job.

The submit waits for the server's ``welcome`` (one round trip), so the job is
checked against the limits of the server it goes to (see
``ServerConnection.submit``); a job over them fails at once with the server's
``too_large`` code and one sentence, and nothing is sent.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Sequence

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
from .tracker import DONE, OFFLINE, JobTracker, offline_sentence

MAX_RESUBMITS = 3
BUSY_RETRY_MAX_S = 5.0


class JobFailed(Exception):
    """A job did not produce a result; ``str(exc)`` is one sentence for the user."""

    def __init__(self, message: str, code: str = "failed", state: str = "failed") -> None:
        super().__init__(message)
        self.code = code
        self.state = state


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobSession:
    def __init__(
        self,
        connection: ServerConnection,
        images: Sequence[bytes],
        settings: JobSettings | dict[str, Any],
        *,
        job_id: str | None = None,
        image_names: list[str] | None = None,
        mesh: dict[str, Any] | None = None,
        want_glb: bool = False,
        no_answer_s: float = 10.0,
        retry_busy_until: float | None = None,
        close_when_fetched: bool = True,
        on_update: Callable[[JobTracker], None] | None = None,
    ) -> None:
        self.connection = connection
        self.on_update = on_update  # called after every event, so no stage is skipped in a batch
        self.job_id = job_id or new_job_id()
        self._images = list(images)
        self._settings = settings
        self._image_names = image_names
        self._mesh = mesh
        self._want_glb = want_glb
        self.retry_busy_until = retry_busy_until  # monotonic deadline for waiting out "busy"
        self.close_when_fetched = close_when_fetched
        self.tracker = JobTracker(self.job_id, address=connection.address, no_answer_s=no_answer_s)
        self._fetch_sent = False
        self._resubmit_at: float | None = None
        self._resubmits = 0
        self._was_offline = False
        self._awaiting_welcome = False  # the submit waits for the limits of the server it goes to
        self._prepared: list[Any] | None = None  # a large submit waiting for the server's "reserved"
        self.offline_since: float | None = None
        self.heard_from_server = False

    def start(self) -> None:
        """Say hello; the job is submitted when the welcome (with the server's limits) arrives."""
        self.connection.hello()
        if getattr(self.connection, "welcome", None) is not None:
            self._submit()  # this connection already knows the server's limits
        else:
            self._awaiting_welcome = True

    def _submit(self) -> None:
        try:
            frames = self.connection.submit(
                self.job_id, self._images, self._settings,
                image_names=self._image_names, mesh=self._mesh, want_glb=self._want_glb, prepare_only=True,
            )
        except SubmitRefused as exc:
            # Refused here, for the limits the server advertised: nothing was sent. The job ends as
            # if the server had rejected it (same code, one sentence), so every caller shows it alike.
            self.tracker.handle(Rejected(self.job_id, exc.code, exc.message))
            self._resubmit_at = None
            return
        welcome = getattr(self.connection, "welcome", None)
        threshold = welcome.reserve_above_bytes if welcome is not None else None
        size = sum(len(memoryview(f).cast("B")) for f in frames[1:])  # what the server counts: the parts
        if threshold is not None and size > threshold:
            # A large upload waits until the server holds room for it: several at once then never
            # exceed its byte budget, and a refused one ("busy") costs no upload.
            self._prepared = frames
            self.connection.reserve(self.job_id, size)
        else:
            self.connection.send_prepared(frames)

    def cancel(self) -> None:
        if self._awaiting_welcome or self._prepared is not None:
            # Never sent: nothing to cancel on the server, and never send it now (room the server
            # reserved for the upload is given back when its reservation expires).
            self._awaiting_welcome = False
            self._prepared = None
            self.tracker.mark_cancelled()
        elif not self.tracker.finished:
            self.connection.cancel(self.job_id)

    def step(self, timeout_ms: int = 0) -> list[Event]:
        """One poll: read what arrived (waiting at most ``timeout_ms``), update the tracker, react."""
        events = self.connection.poll(timeout_ms)
        now = time.monotonic()
        for event in events:
            if not isinstance(event, Offline):
                self.heard_from_server = True
            self._react(event, now)
            if self.on_update is not None:
                self.on_update(self.tracker)
        if self._was_offline and self.connection.seconds_since_last_message() < self.connection.offline_after_s:
            # The server answers again (maybe a restarted one; its keep-alive pong is not an event).
            self._reattach()
        if self._resubmit_at is not None and now >= self._resubmit_at:
            self._resubmit_at = None
            self._submit()
        self.tracker.tick(now)
        if self.tracker.state == OFFLINE:
            self.offline_since = self.offline_since or now
        else:
            self.offline_since = None
        return events

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
                wait = min(max(event.retry_after_s or 1.0, 0.5), BUSY_RETRY_MAX_S)
                self._resubmit_at = min(now + wait, self.retry_busy_until)
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
            isinstance(event, ResultReady) or (isinstance(event, StateChanged) and event.state == "done")
        ):
            self._fetch_sent = True
            self.connection.fetch(self.job_id)
        if ours and isinstance(event, Result) and self.close_when_fetched:
            self.connection.close_job(self.job_id)


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
    """Submit a job to the server at ``address`` and block until its result arrives.

    ``on_progress(tracker)`` is called after every event from the server.
    Raises :class:`JobFailed` with one sentence on any failure; Ctrl-C cancels
    the job on the server before re-raising ``KeyboardInterrupt``.
    """
    address = address or DEFAULT_ADDRESS
    start = time.monotonic()
    deadline = start + timeout_s
    with ServerConnection(address, curve=curve, offline_after_s=min(5.0, connect_timeout_s)) as conn:
        session = JobSession(
            conn, images, settings, job_id=job_id, image_names=image_names, mesh=mesh, want_glb=want_glb,
            no_answer_s=connect_timeout_s, retry_busy_until=start + wait_if_busy_s, on_update=on_progress,
        )
        tracker = session.tracker
        session.start()
        try:
            while not tracker.finished:
                session.step(100)
                now = time.monotonic()
                if session.offline_since is not None:
                    # Never reached: give up after connect_timeout_s. Lost mid-job: wait for a restart.
                    gone_for = now - start if not session.heard_from_server else now - session.offline_since
                    limit = connect_timeout_s if not session.heard_from_server else offline_grace_s
                    if gone_for >= limit:
                        # The time really waited: since the start, or since the server's last word.
                        silent = gone_for if not session.heard_from_server else conn.seconds_since_last_message()
                        raise JobFailed(offline_sentence(conn.address, silent), "offline", OFFLINE)
                if now > deadline:
                    session.cancel()
                    raise JobFailed(f"The job took longer than {timeout_s:.0f} s and was cancelled.", "timeout")
        except KeyboardInterrupt:
            session.cancel()
            _wait_for_cancel(session, 2.0)
            raise
        if tracker.state != DONE or tracker.result is None:
            raise JobFailed(tracker.error or "The job ended without a result.", tracker.error_code or "failed", tracker.state)
        return tracker.result


def _wait_for_cancel(session: JobSession, seconds: float) -> None:
    """Give the server a moment to confirm, so the job is not left running (LINGER 0 drops unsent data)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not session.tracker.finished:
        try:
            session.step(50)
        except KeyboardInterrupt:
            return


__all__ = ["JobFailed", "JobSession", "new_job_id", "run_job"]

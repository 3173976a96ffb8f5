"""Cancel, re-attach after a disconnect, worker crashes and failures: each job ends exactly once."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from blender_addon.client import (
    Accepted,
    Pong,
    Progress,
    Rejected,
    Result,
    ResultReady,
    ServerConnection,
    StateChanged,
)
from blender_addon.protocol.settings import JobSettings

from .harness import ServerProcess, collect, events_of, png_bytes
from .pipelines import EXPORT_FAILED_SENTENCE, scripted

TERMINAL = {"done", "failed", "cancelled", "expired"}


def job_id() -> str:
    return f"l-{uuid.uuid4().hex[:12]}"


def terminal_of(conn: ServerConnection, jid: str, timeout_s: float = 15.0) -> tuple[StateChanged, list]:
    events = collect(
        conn, lambda e: isinstance(e, StateChanged) and e.job_id == jid and e.state in TERMINAL, timeout_s
    )
    return events[-1], events


def assert_next_job_succeeds(conn: ServerConnection) -> None:
    jid = job_id()
    conn.submit(jid, [png_bytes()], JobSettings())
    state, _ = terminal_of(conn, jid, timeout_s=30.0)  # may include a fresh worker's start-up
    assert state.state == "done"


def test_cancel_running_job_within_two_seconds(conn: ServerConnection) -> None:
    jid = job_id()
    conn.submit(jid, [png_bytes()], scripted("slow", steps=100))  # 10 s of work
    collect(conn, lambda e: isinstance(e, Progress) and e.job_id == jid)
    conn.cancel(jid)
    state, events = terminal_of(conn, jid)
    assert state.state == "cancelled"  # not done: the 10 s job stopped at a step boundary
    assert len([e for e in events if isinstance(e, StateChanged) and e.state in TERMINAL]) == 1
    # Cancelling again just reports how it ended.
    conn.cancel(jid)
    again = collect(conn, lambda e: isinstance(e, StateChanged))[-1]
    assert again.state == "cancelled"
    assert_next_job_succeeds(conn)


def test_cancel_queued_job_and_busy_queue(conn: ServerConnection) -> None:
    running, queued1, queued2, overflow = (job_id() for _ in range(4))
    conn.submit(running, [png_bytes()], scripted("slow", steps=30))
    collect(conn, lambda e: isinstance(e, Progress))
    conn.submit(queued1, [png_bytes()], JobSettings())
    conn.submit(queued2, [png_bytes()], JobSettings())
    conn.submit(overflow, [png_bytes()], JobSettings())  # the queue holds 2
    events = collect(conn, lambda e: isinstance(e, Rejected))
    positions = {e.job_id: e.queue_position for e in events_of(events, Accepted)}
    assert positions == {queued1: 1, queued2: 2}
    busy = events[-1]
    assert (busy.job_id, busy.code) == (overflow, "busy")
    assert busy.retry_after_s is not None and 1.0 <= busy.retry_after_s <= 3600
    conn.cancel(queued1)
    state, _ = terminal_of(conn, queued1, timeout_s=2.0)
    assert state.state == "cancelled"
    conn.cancel(running)
    states = {}
    deadline = time.monotonic() + 20
    while len(states) < 2 and time.monotonic() < deadline:
        for e in conn.poll(50):
            if isinstance(e, StateChanged) and e.state in TERMINAL:
                states[e.job_id] = e.state
    assert states == {running: "cancelled", queued2: "done"}


def test_disconnect_mid_job_then_reattach(shared_server: ServerProcess) -> None:
    jid = job_id()
    first = ServerConnection(shared_server.address)
    first.submit(jid, [png_bytes()], scripted("slow", steps=20))
    collect(first, lambda e: isinstance(e, Progress) and e.step >= 2)
    first.close()  # the artist closed Blender mid-job

    second = ServerConnection(shared_server.address)
    try:
        second.attach(jid)
        replay = collect(second, lambda e: isinstance(e, Progress), timeout_s=5.0)
        assert events_of(replay, StateChanged)[0].state == "running"
        assert replay[-1].step >= 2  # the latest progress is replayed at once
        collect(second, lambda e: isinstance(e, ResultReady) and e.job_id == jid)
        second.fetch(jid)
        result = collect(second, lambda e: isinstance(e, Result))[-1]
        assert result.mesh["faces"].shape == (12, 3)
        # Attaching after the end replays the outcome too.
        second.attach(jid)
        late = collect(second, lambda e: isinstance(e, ResultReady))
        assert events_of(late, StateChanged)[-1].state == "done"
    finally:
        second.close()


@pytest.mark.parametrize(
    ("behaviour", "code", "retryable"),
    [("crash", "worker_crashed", True), ("oom", "out_of_memory", True), ("fail", "bad_mesh", False)],
)
def test_failures_end_the_job_not_the_server(conn: ServerConnection, behaviour: str, code: str, retryable: bool) -> None:
    jid = job_id()
    conn.submit(jid, [png_bytes()], scripted(behaviour))
    state, events = terminal_of(conn, jid, timeout_s=20.0)
    assert (state.state, state.code, state.retryable) == ("failed", code, retryable)
    assert state.message
    if behaviour == "crash":
        assert "exited with status 17" in state.message
    assert_next_job_succeeds(conn)


def test_a_step1x3d_error_reaches_the_client_with_its_own_code_and_sentence(conn: ServerConnection) -> None:
    """The backend raises the one error type (not a PipelineError): its code and sentence, not internal_error."""
    jid = job_id()
    conn.submit(jid, [png_bytes()], scripted("export-failed"))
    state, _ = terminal_of(conn, jid, timeout_s=20.0)
    assert (state.state, state.code, state.message, state.retryable) == (
        "failed", "export_failed", EXPORT_FAILED_SENTENCE, False)
    assert_next_job_succeeds(conn)  # a failure of the job, not of the worker


def test_worker_killed_mid_job(conn: ServerConnection) -> None:
    conn.ping()
    old_pid = collect(conn, lambda e: isinstance(e, Pong))[-1].status["worker_pid"]
    jid = job_id()
    conn.submit(jid, [png_bytes()], scripted("slow", steps=50))
    collect(conn, lambda e: isinstance(e, Progress) and e.job_id == jid)
    os.kill(old_pid, signal.SIGKILL)
    state, _ = terminal_of(conn, jid)
    assert (state.state, state.code) == ("failed", "worker_crashed")
    assert "SIGKILL" in state.message
    assert_next_job_succeeds(conn)
    conn.ping()
    new_pid = collect(conn, lambda e: isinstance(e, Pong))[-1].status["worker_pid"]
    assert new_pid not in (0, old_pid)


def test_hung_job_is_killed_on_cancel(conn: ServerConnection) -> None:
    """A step that never reports progress cannot see the cancel: the worker is killed after the grace time."""
    jid = job_id()
    conn.submit(jid, [png_bytes()], scripted("hang"))
    collect(conn, lambda e: isinstance(e, Progress) and e.job_id == jid)
    conn.cancel(jid)
    state, _ = terminal_of(conn, jid)
    assert state.state == "cancelled"  # the step never ends by itself: only the kill after the grace ends it
    assert_next_job_succeeds(conn)


def test_close_while_running_cancels_and_forgets(conn: ServerConnection) -> None:
    from blender_addon.client import Closed, ErrorEvent

    jid = job_id()
    conn.submit(jid, [png_bytes()], scripted("slow", steps=100))
    collect(conn, lambda e: isinstance(e, Progress) and e.job_id == jid)
    conn.close_job(jid)
    events = collect(conn, lambda e: isinstance(e, StateChanged) and e.state in TERMINAL)
    assert events_of(events, Closed) and events[-1].state == "cancelled"
    conn.attach(jid)
    err = collect(conn, lambda e: isinstance(e, ErrorEvent))[-1]
    assert err.code == "unknown_job"
    assert_next_job_succeeds(conn)


def test_progress_fraction_and_eta_track_the_work(conn: ServerConnection) -> None:
    jid = job_id()
    conn.submit(jid, [png_bytes()], scripted("slow", steps=20))  # 20 steps of 0.1 s
    events = collect(conn, lambda e: isinstance(e, ResultReady) and e.job_id == jid)
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.step for p in progress] == list(range(1, 21))  # 10 reports/s: nothing throttled away
    for p in progress:
        # Only the geometry stage runs; it weighs 3 of 4 in the test pipeline's stage plan.
        assert p.fraction == pytest.approx(0.75 * p.step / 20, abs=1e-4)
    halfway = next(p for p in progress if p.step == 10)
    # Elapsed ~1 s at 37.5%: the remaining geometry plus the (unreached) texture share, ~1.7 s.
    assert halfway.eta_s is not None and 0.5 < halfway.eta_s < 4.0
    assert progress[-1].eta_s is not None and progress[-1].eta_s < halfway.eta_s


def test_free_vram_waits_for_the_running_job(conn: ServerConnection) -> None:
    from blender_addon.client import VramFreed

    jid = job_id()
    conn.submit(jid, [png_bytes()], scripted("slow", steps=10))
    collect(conn, lambda e: isinstance(e, Progress))
    conn.free_vram()
    events = collect(conn, lambda e: isinstance(e, VramFreed))
    done_at = next(i for i, e in enumerate(events) if isinstance(e, ResultReady))
    assert done_at < len(events) - 1, "memory is released after the job, never under it"


def test_repeated_free_vram_from_one_client_is_remembered_once(conn: ServerConnection) -> None:
    # Each request while a job runs used to be queued again: a client repeating it (a button held,
    # a retry loop) grew the server's list without bound and got one reply per request.
    from blender_addon.client import VramFreed

    jid = job_id()
    conn.submit(jid, [png_bytes()], scripted("slow", steps=10))
    collect(conn, lambda e: isinstance(e, Progress))
    for _ in range(200):
        conn.free_vram()
    events = collect(conn, lambda e: isinstance(e, VramFreed))
    assert any(isinstance(e, ResultReady) for e in events)
    time.sleep(1.0)
    extra = [e for e in conn.poll(50) if isinstance(e, VramFreed)]
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        extra += [e for e in conn.poll(50) if isinstance(e, VramFreed)]
    assert extra == [], f"{len(extra) + 1} vram_freed replies for one waiting client"

"""JobTracker: the pure state machine behind every progress display."""

from __future__ import annotations

import pytest

from blender_addon.client import (
    Accepted,
    ErrorEvent,
    JobTracker,
    Offline,
    Progress,
    Rejected,
    Result,
    ResultReady,
    StateChanged,
)
from blender_addon.client.tracker import format_eta

ADDRESS = "tcp://127.0.0.1:5555"


def tracker() -> JobTracker:
    return JobTracker("j1", address=ADDRESS, no_answer_s=10.0, now=0.0)


def result() -> Result:
    return Result("j1", {}, [], {}, {}, None, {}, {}, [])


def test_happy_path() -> None:
    t = tracker()
    assert t.state == "connecting"
    t.handle(Accepted("j1", 2))
    assert (t.state, t.queue_position, t.status_line) == ("queued", 2, "queued (2 jobs ahead)")
    t.handle(StateChanged("j1", "running"))
    t.handle(Progress("j1", "geometry", 10, 50, 0.2, 40.0, ""))
    assert (t.state, t.stage, t.fraction, t.eta_s) == ("running", "geometry", 0.2, 40.0)
    assert t.status_line == "geometry 10/50 (20%, about 40 s left)"
    t.handle(StateChanged("j1", "done"))
    t.handle(ResultReady("j1"))
    assert t.result_ready and t.state == "running" and not t.finished
    t.handle(result())
    assert t.state == "done" and t.finished and t.fraction == 1.0


def test_events_for_other_jobs_are_ignored() -> None:
    t = tracker()
    assert t.handle(Progress("other", "x", 1, 2, 0.5, None)) is False
    assert t.handle(ErrorEvent("other", "unknown_job", "no")) is False
    assert t.state == "connecting"


@pytest.mark.parametrize(("event", "state", "sentence"), [
    (Rejected("j1", "busy", "queue full", 42.0), "failed", "The server is busy with other jobs; try again in about 42 s."),
    (StateChanged("j1", "failed", "out_of_memory", "x", True), "failed",
     "The server ran out of GPU memory; lower the face count or texture size, free VRAM, or close other GPU programs, and try again."),
    (Rejected("j1", "bad_image", "front.png is not a PNG, JPEG or WebP file."), "failed",
     "front.png is not a PNG, JPEG or WebP file."),
    (StateChanged("j1", "cancelled"), "cancelled", "Cancelled."),
    (StateChanged("j1", "failed", "worker_crashed", "The job crashed the worker: exit 3", True), "failed",
     "The job crashed the worker: exit 3."),
    (ErrorEvent(None, "auth_refused", "The server refused this computer's key."), "failed",
     "The server refused this computer's key."),
])
def test_failures_give_one_sentence(event: object, state: str, sentence: str) -> None:
    t = tracker()
    t.handle(Accepted("j1", 0))
    t.handle(event)  # type: ignore[arg-type]
    assert (t.state, t.error) == (state, sentence)
    assert t.status_line == sentence


def test_exactly_one_final_state() -> None:
    t = tracker()
    t.handle(StateChanged("j1", "cancelled"))
    t.handle(StateChanged("j1", "failed", "internal_error", "late"))
    t.handle(Progress("j1", "x", 1, 2, 0.5, None))
    assert (t.state, t.error) == ("cancelled", "Cancelled.")


def test_no_answer_goes_offline_with_the_fix() -> None:
    t = tracker()
    t.tick(now=5.0)
    assert t.state == "connecting"
    t.tick(now=10.5)
    assert t.state == "offline"
    assert t.error == ("No Step1X-3D server answers at tcp://127.0.0.1:5555: start one with 'step1x3d serve --port 5555' "
                       "or fix the address.")
    assert not t.finished


def test_offline_is_left_when_the_server_answers() -> None:
    t = tracker()
    t.handle(Accepted("j1", 0))
    t.handle(Progress("j1", "texture", 1, 4, 0.5, 10.0))
    t.handle(Offline(ADDRESS, 6.0))
    assert t.state == "offline" and t.error == f"The Step1X-3D server at {ADDRESS} went silent; waiting for it to answer again."
    t.handle(Progress("j1", "texture", 2, 4, 0.6, 8.0))
    assert (t.state, t.error) == ("running", "")


def test_busy_wait_is_not_a_failure() -> None:
    t = tracker()
    t.note_waiting("the server is busy")
    t.tick(now=60.0)
    assert t.state == "queued"


@pytest.mark.parametrize(("seconds", "text"), [(None, "?"), (4.4, "4 s"), (75, "1:15"), (3725, "1:02:05")])
def test_format_eta(seconds: float | None, text: str) -> None:
    assert format_eta(seconds) == text

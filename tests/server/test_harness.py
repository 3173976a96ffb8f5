"""The test harness itself: ``collect`` keeps the events a poll returned after its match.

The connection here is a stand-in with scripted poll batches (the subject is the helper, and a
real server cannot be made to put two events in one poll on demand); the server tests use the
helper against real servers.
"""

from __future__ import annotations

from typing import Any

import pytest

from blender_addon.client.events import Event, Pong, StateChanged

from .harness import collect


class Batches:
    """Answers each poll with the next scripted batch, then nothing."""

    def __init__(self, *batches: list[Event]) -> None:
        self.batches = list(batches)
        self.polls = 0

    def poll(self, timeout_ms: int = 0) -> list[Event]:
        self.polls += 1
        return self.batches.pop(0) if self.batches else []


def state(s: str) -> StateChanged:
    return StateChanged("j", s)


def is_state(s: str) -> Any:
    return lambda e: isinstance(e, StateChanged) and e.state == s


def test_events_after_the_match_in_the_same_poll_are_kept_for_the_next_call() -> None:
    conn: Any = Batches([state("queued"), state("running"), state("done")], [Pong("t", {})])
    assert collect(conn, is_state("running")) == [state("queued"), state("running")]
    polls = conn.polls
    assert collect(conn, is_state("done")) == [state("done")]  # from the first poll: no new one needed
    assert conn.polls == polls
    assert [type(e) for e in collect(conn, lambda e: isinstance(e, Pong))] == [Pong]


def test_a_timeout_consumes_what_it_saw_and_says_so() -> None:
    conn: Any = Batches([state("queued")])
    with pytest.raises(AssertionError, match="timed out after 0.2 s; events: .*queued"):
        collect(conn, is_state("done"), timeout_s=0.2)
    conn.batches.append([state("done")])
    assert collect(conn, is_state("done")) == [state("done")]  # "queued" is not returned twice

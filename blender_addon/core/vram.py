"""The panel's Free VRAM button: one non-blocking request, stepped by the timer like the status probe.

The server answers ``vram_freed`` once no job is running (it never drops a running
job's models), so the request may wait; the panel says so and the artist can cancel it.
"""

from __future__ import annotations

import time
from typing import Callable

from ..client.connection import ServerConnection
from ..client.events import VramFreed, Welcome
from . import wording

# How long to wait for the answer once the server is known to be there (a running job first ends).
ANSWER_WAIT_S = 600.0


class VramRequest:
    """Call :meth:`start`, then :meth:`step` until :attr:`finished`; :attr:`line` is the panel's sentence."""

    def __init__(self, connect: Callable[[], ServerConnection], address: str, *, timeout_s: float = 5.0,
                 answer_wait_s: float = ANSWER_WAIT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect
        self.address = address
        self.timeout_s = timeout_s
        self.answer_wait_s = answer_wait_s
        self._clock = clock
        self._conn: ServerConnection | None = None
        self._started = 0.0
        self.welcomed = False
        self.finished = False
        self.failed = False
        self.line = f"Asking {address} to free GPU memory…"

    def start(self) -> None:
        self._started = self._clock()
        try:
            self._conn = self._connect()
            self._conn.hello()
            self._conn.free_vram()
        except Exception as exc:
            self._done(wording.sentence(f"Cannot reach {self.address}: {exc}"), failed=True)

    def step(self, timeout_ms: int = 0) -> bool:
        """Poll once; True when :attr:`line` changed."""
        if self.finished or self._conn is None:
            return False
        try:
            events = self._conn.poll(timeout_ms)
        except Exception as exc:
            self._done(wording.sentence(f"Lost the connection to {self.address}: {exc}"), failed=True)
            return True
        changed = False
        for ev in events:
            if isinstance(ev, Welcome) and not self.welcomed:
                self.welcomed = True
                self.line = "Freeing GPU memory (after the running job, if any)…"
                changed = True
            elif isinstance(ev, VramFreed):
                detail = f": {ev.message}" if ev.message else ""
                self._done(wording.sentence(f"The server freed its GPU memory{detail}"), failed=False)
                return True
        waited = self._clock() - self._started
        if not self.welcomed and waited > self.timeout_s:
            self._done(wording.offline(self.address, wording.ADDON_ADDRESS_HINT), failed=True)
            return True
        if self.welcomed and waited > self.answer_wait_s:
            self._done(f"The server at {self.address} did not free its GPU memory within "
                       f"{self.answer_wait_s:.0f} s (a long job may still be running); try again later.", failed=True)
            return True
        return changed

    def cancel(self) -> None:
        self._done("Stopped waiting for the server to free its GPU memory.", failed=False)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _done(self, line: str, *, failed: bool) -> None:
        self.finished = True
        self.failed = failed
        self.line = line
        self.close()

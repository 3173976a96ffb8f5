"""The panel's server status line: a hello, answered by welcome or by silence."""

from __future__ import annotations

import time
from typing import Callable

from . import wording
from ..client.events import Welcome
from .session import Connection, ServerInfo, server_info


class StatusProbe:
    """One non-blocking check; call :meth:`step` until :attr:`finished`."""

    def __init__(self, connect: Callable[[], Connection], address: str, *, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect
        self.address = address
        self.timeout_s = timeout_s
        self._clock = clock
        self._conn: Connection | None = None
        self._started = 0.0
        self.finished = False
        self.online = False
        self.server: ServerInfo | None = None
        self.line = f"Checking {address}…"

    def start(self) -> None:
        self._started = self._clock()
        try:
            self._conn = self._connect()
            self._conn.hello()
        except Exception as exc:
            self._done(False, wording.sentence(f"Cannot connect to {self.address}: {exc}"))

    def step(self) -> bool:
        """Poll once; True when the line changed (the panel needs a redraw)."""
        if self.finished or self._conn is None:
            return False
        try:
            events = self._conn.poll(0)
        except Exception as exc:
            self._done(False, wording.sentence(f"Lost the connection to {self.address}: {exc}"))
            return True
        for ev in events:
            if isinstance(ev, Welcome):
                self.server = server_info(ev)
                self._done(True, self.server.line())
                return True
        if self._clock() - self._started > self.timeout_s:
            self._done(False, wording.offline(self.address))
            return True
        return False

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _done(self, online: bool, line: str) -> None:
        self.finished = True
        self.online = online
        self.line = line
        self.close()

"""The panel's server status line: a hello, answered by welcome or by silence."""

from __future__ import annotations

import time
from typing import Callable

from ..client.connection import ServerConnection
from ..client.events import Pong, Welcome
from . import wording
from ..client.session import ServerInfo, server_info

STATUS_TOKEN = "status"
PONG_WAIT_S = 1.0


class StatusProbe:
    """One non-blocking check; call :meth:`step` until :attr:`finished`."""

    def __init__(self, connect: Callable[[], ServerConnection], address: str, *, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect
        self.address = address
        self.timeout_s = timeout_s
        self._clock = clock
        self._conn: ServerConnection | None = None
        self._started = 0.0
        self._welcomed_at = 0.0
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
            if isinstance(ev, Welcome) and self.server is None:
                # Welcome says what the server is; a ping's pong says how busy it is right now.
                self.server = server_info(ev)
                self.line = self.server.line()
                self._welcomed_at = self._clock()
                try:
                    self._conn.ping(STATUS_TOKEN)
                except Exception:
                    self._done(True, self.line)
                    return True
            elif isinstance(ev, Pong) and self.server is not None and ev.token == STATUS_TOKEN:
                self._done(True, self.server.line(ev.status))
                return True
        now = self._clock()
        if self.server is not None and now - self._welcomed_at > PONG_WAIT_S:
            self._done(True, self.line)  # an older server without status in its pong
            return True
        if self.server is None and now - self._started > self.timeout_s:
            self._done(False, wording.offline(self.address, wording.ADDON_ADDRESS_HINT))
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

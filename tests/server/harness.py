"""Real server processes on loopback for tests: start on an ephemeral port, always stop.

No mocks: every test talks ZeroMQ to a ``step1x3d serve`` subprocess that runs
a test pipeline (``tests.server.pipelines``) in its supervised worker.
"""

from __future__ import annotations

import io
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from blender_addon.client import ServerConnection
from blender_addon.client.events import Event, Welcome

REPO = Path(__file__).resolve().parents[2]
SCRIPTED = "tests.server.pipelines:ScriptedPipeline"
START_TIMEOUT_S = 30.0


class ServerProcess:
    def __init__(self, results_dir: Path, *extra: str, backend: str = SCRIPTED, port: int = 0) -> None:
        self.results_dir = results_dir
        self.args = [
            sys.executable, "-m", "inference_server.cli", "serve",
            "--port", str(port), "--backend", backend, "--results-dir", str(results_dir),
            "--log-level", "WARNING", *extra,
        ]
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        # stderr goes to a file, not a pipe: a chatty server must never block on a full pipe mid-test.
        self._stderr = tempfile.TemporaryFile(mode="w+t")
        self._err_text = ""
        self.proc = subprocess.Popen(
            self.args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        self.address = self._read_address()

    def _read_address(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if "listening on" in line:
                    return line.split()[-1]
                if not line and self.proc.poll() is not None:
                    break
            elif self.proc.poll() is not None:
                break
        err = self.stop(timeout_s=2.0)[1]
        raise RuntimeError(f"server did not start: {err[-2000:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> tuple[int, str]:
        """Signal, wait, and kill if needed. Returns (exit status, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate(timeout=10)
        if not self._stderr.closed:
            self._stderr.seek(0)
            self._err_text = self._stderr.read()
            self._stderr.close()
        return self.proc.returncode, self._err_text

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def png_bytes(size: int = 32, color: tuple[int, int, int] = (200, 100, 50), mode: str = "RGB") -> bytes:
    arr = np.zeros((size, size, 3), dtype=np.uint8)
    arr[...] = color
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


# Events a poll returned after the one a collect() waited for: the next collect() on that connection
# sees them first, so waiting for X then Y never loses a Y that arrived in X's poll.
_unconsumed: "weakref.WeakKeyDictionary[ServerConnection, list[Event]]" = weakref.WeakKeyDictionary()


def collect(
    conn: ServerConnection, until: Callable[[Event], bool], timeout_s: float = 10.0
) -> list[Event]:
    """Poll until an event satisfies ``until`` (returned last); AssertionError on timeout.

    Events after the match are kept for the next call on ``conn``; on a timeout every event seen
    is consumed (and listed in the error).
    """
    seen: list[Event] = []
    pending = _unconsumed.pop(conn, [])
    deadline = time.monotonic() + timeout_s
    while True:
        for i, event in enumerate(pending):
            seen.append(event)
            if until(event):
                if i + 1 < len(pending):
                    _unconsumed[conn] = pending[i + 1:]
                return seen
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s; events: {seen!r}"[:3000])
        pending = conn.poll(50)


def wait_ready(address: str, timeout_s: float = START_TIMEOUT_S, **conn_args: Any) -> Welcome:
    """Say hello until the welcome shows a loaded backend."""
    deadline = time.monotonic() + timeout_s
    with ServerConnection(address, **conn_args) as conn:
        while time.monotonic() < deadline:
            conn.hello()
            for event in collect(conn, lambda e: isinstance(e, Welcome), timeout_s=5.0):
                if isinstance(event, Welcome) and event.device != "loading":
                    return event
            time.sleep(0.1)
    raise AssertionError("the server's backend never became ready")


def events_of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def running_server(tmp_root: Path, *extra: str, **kwargs: Any) -> Iterator[ServerProcess]:
    """Generator for fixtures: a ready server that is stopped whatever happens."""
    server = ServerProcess(tmp_root, *extra, **kwargs)
    try:
        wait_ready(server.address)
        yield server
    finally:
        server.stop()

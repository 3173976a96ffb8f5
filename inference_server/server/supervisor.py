"""Supervision of the engine the server runs jobs on: start it, read its reports, notice its death, restart it.

The engine is the local worker process or the Ray bridge (``engine.py``). This module owns its
lifecycle and the backend's health: whether it ever loaded, the error that keeps it from loading
(``backend_error``), the loading watchdog, and how many crashes while loading are too many. Job
bookkeeping stays with the server (``server.py``): the supervisor hands it the job reports it
reads (``JobProgress``, ``JobDone``, ...) and tells it, through ``on_backend_error``, when queued
jobs can no longer run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from blender_addon.protocol.schema import WireMessage

from ..pipeline.registry import resolve_backend
from . import pipe
from .config import ServerConfig
from .engine import Engine, create_engine
from .jobs import JobError

log = logging.getLogger("step1x3d.server")

MAX_CRASHES_WHILE_LOADING = 3


class Supervisor:
    def __init__(self, config: ServerConfig, on_backend_error: Callable[[JobError], None]) -> None:
        self.config = config
        self.engine: Engine | None = None
        self.backend_name = resolve_backend(config.backend, config.weights)
        self.backend_error: JobError | None = None
        self.ever_ready = False
        self._crashes_while_loading = 0
        self._on_backend_error = on_backend_error

    # ----------------------------------------------------------------- state

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.engine.ready

    @property
    def gave_up(self) -> bool:
        """The backend never loaded and will not: the server exits with a non-zero status."""
        return self.backend_error is not None and not self.ever_ready

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.engine = create_engine(self.config)

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop(timeout_s=2.0)
            self.engine = None

    def drop(self) -> None:
        """Kill the engine now (it crashed, hung, or ignored a cancel); :meth:`start` makes a fresh one."""
        if self.engine is not None:
            self.engine.kill()
            self.engine = None

    def fail(self, error: JobError) -> None:
        """The backend cannot run jobs (it failed to load): say so once, and let the server fail its queue."""
        self.backend_error = error
        log.error("backend %s unavailable: %s", self.backend_name, error.message)
        self._on_backend_error(error)

    # ----------------------------------------------------------------- reports

    def receive(self) -> tuple[Engine, list[WireMessage], bool]:
        """The engine, what it reported since the last call, and whether it is still alive."""
        handle = self.engine
        assert handle is not None
        messages, alive = handle.receive()
        return handle, messages, alive

    def note(self, msg: WireMessage) -> bool:
        """Apply a report about the engine itself (ready, load failure, retiring); False for a job's report."""
        engine = self.engine
        assert engine is not None
        if isinstance(msg, pipe.Ready):
            engine.ready, engine.name, engine.capabilities, engine.device = True, msg.name, msg.capabilities, msg.device
            self.ever_ready = True
            self._crashes_while_loading = 0
            log.info("backend %s ready on %s", msg.name, msg.device)
        elif isinstance(msg, pipe.LoadFailed):
            self.fail(JobError(msg.code, msg.message))
        elif isinstance(msg, pipe.Retiring):
            engine.ready, engine.retiring = False, True  # a fresh one follows its exit
        else:
            return False
        return True

    def died(self) -> tuple[str, bool]:
        """The engine's process ended: drop it; returns how it ended and whether it had loaded."""
        assert self.engine is not None
        description = self.engine.exit_description()
        was_ready = self.engine.ready or self.engine.retiring
        self.drop()
        return description, was_ready

    def restart_after(self, description: str, was_ready: bool, *, stopping: bool) -> None:
        """After a death: a fresh engine, unless the backend cannot load (then fail, once)."""
        if self.backend_error is not None:
            return  # a load failure already explained itself; do not restart in a loop
        if not was_ready:
            self._crashes_while_loading += 1
            if self._crashes_while_loading >= MAX_CRASHES_WHILE_LOADING:
                self.fail(JobError("worker_crashed", f"the backend failed to start: {description}"))
                return
        if not stopping:
            log.warning("%s; starting a fresh worker", description)
            self.start()

    def check_loading(self, now: float) -> bool:
        """The loading watchdog: True (and the backend failed) when the engine took too long to load."""
        engine = self.engine
        if engine is None or engine.ready or engine.retiring:
            return False
        if now - engine.started <= self.config.worker_ready_timeout_s:
            return False
        self.fail(JobError("worker_crashed", "the backend did not finish loading in time"))
        return True


__all__ = ["MAX_CRASHES_WHILE_LOADING", "Supervisor"]

"""The supervised worker process: loads the backend once, runs one job at a time.

The supervisor (``server.py``) owns the network; the worker owns the pipeline.
If a job crashes the process (a segfault in a native extension, the OOM killer,
``os._exit``), only that job fails: the supervisor sees the pipe close and
starts a fresh worker for the next one.

The pipe carries the typed messages of ``pipe.py`` through the wire's codec (never a pickle):
the supervisor sends ``RunJob`` (the request, its encoded images as parts: the worker decodes
them as the job's first step), ``Release``, ``Stop``; the worker answers ``Ready``,
``LoadFailed``, ``JobProgress``, ``JobDone`` (the result is staged on disk; the supervisor
commits it, see ``result_store``), ``JobCancelled``, ``JobFailure``, ``Released`` and
``Retiring`` (it exits after an out-of-memory). Cancellation is a shared event the pipeline's
``ctx.progress`` checks between steps.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from blender_addon.protocol.codec import encode_message
from blender_addon.protocol.errors import Step1X3DError
from blender_addon.protocol.schema import ProtocolError, WireMessage

from ..pipeline.base import JobCancelled as JobCancelledError
from ..pipeline.base import JobContext, Pipeline
from ..pipeline.registry import create_pipeline
from .intake import QueuedRequest
from .job_runner import produce_result
from .pipe import (
    JobCancelled, JobDone, JobFailure, JobProgress, LoadFailed, PipeEnd, Ready, Release, Released, Retiring, RunJob, Stop,
)
from .result_store import ResultStore

PROGRESS_INTERVAL_S = 0.05  # forward at most 20 progress reports a second


def _is_out_of_memory(exc: BaseException) -> bool:
    # torch.cuda.OutOfMemoryError without importing torch here.
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


def _device_of(capabilities: dict[str, Any]) -> str:
    device = capabilities.get("device")
    return str(device) if device else "cpu"


def _run_job(
    conn: PipeEnd,
    pipeline: Pipeline,
    store: ResultStore,
    cancel_event: Any,
    job_id: str,
    queued: QueuedRequest,
    want_glb: bool,
) -> bool:
    """Run one job and report its outcome; returns False when the worker should exit afterwards."""
    last_time = [0.0]
    last_stage = [""]

    def report(stage: str, step: int, total: int, message: str) -> None:
        now = time.monotonic()
        # Throttle chatty pipelines, but never drop a stage change or a stage's last step.
        if stage != last_stage[0] or step >= total or now - last_time[0] >= PROGRESS_INTERVAL_S:
            last_time[0], last_stage[0] = now, stage
            conn.send(JobProgress(job_id, stage, int(step), int(total), str(message)))

    ctx = JobContext(callback=report, cancel_event=cancel_event)
    try:
        result = produce_result(pipeline.run, pipeline.name, queued, job_id, want_glb, ctx)
        # On disk before anyone hears "ready", but only staged: the server commits it when it hears
        # "done", so a worker killed between these two lines leaves nothing that looks done.
        store.stage(job_id, encode_message(result))
        conn.send(JobDone(job_id))
        return True
    except JobCancelledError:
        conn.send(JobCancelled(job_id))
        return True
    except Step1X3DError as exc:  # the one error type: its own code and sentence (export_failed, disk_full, ...)
        conn.send(JobFailure(job_id, exc.code, exc.message, exc.retryable))
        return True
    except BaseException as exc:  # noqa: BLE001 - the worker must report, whatever the pipeline raised
        if _is_out_of_memory(exc):
            # "retiring" first: the supervisor must not hand this process another job once it hears "failed".
            conn.send(Retiring())
            conn.send(JobFailure(
                job_id, "out_of_memory",
                "The job ran out of memory; lower the face count or texture size, free VRAM, and try again.", True,
            ))
            return False  # a fresh process is the only reliable way to get the memory back
        traceback.print_exc(file=sys.stderr)
        exiting = isinstance(exc, (KeyboardInterrupt, SystemExit))
        if exiting:
            conn.send(Retiring())
        conn.send(JobFailure(job_id, "internal_error", f"the backend failed: {type(exc).__name__}: {exc}", False))
        return not exiting


def _exit_with_parent(interval_s: float = 1.0) -> None:
    """Die when the supervisor dies (even by SIGKILL), instead of holding the GPU as an orphan."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker_main(
    connection: Connection,
    cancel_event: Any,
    backend: str,
    weights: str | None,
    results_dir: str,
    options: dict[str, Any],
) -> None:
    """Entry point of the spawned worker process."""
    # Ctrl-C in a terminal reaches the whole process group; shutdown is the supervisor's call.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _exit_with_parent()
    conn = PipeEnd(connection)
    store = ResultStore(Path(results_dir))
    try:
        pipeline = create_pipeline(backend, weights, **options)
        capabilities = dict(pipeline.capabilities())
    except Step1X3DError as exc:
        conn.send(LoadFailed(exc.code, exc.message))
        return
    except Exception as exc:  # noqa: BLE001 - report any load failure as one sentence
        traceback.print_exc(file=sys.stderr)
        conn.send(LoadFailed("bad_backend", f"backend {backend!r} failed to load: {type(exc).__name__}: {exc}"))
        return
    conn.send(Ready(pipeline.name, capabilities, _device_of(capabilities)))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, ProtocolError):
            return  # the supervisor is gone (or not ours): a fresh worker follows
        if isinstance(msg, RunJob):
            if not _run_job(conn, pipeline, store, cancel_event, msg.job_id, msg.request(), msg.want_glb):
                return
        elif isinstance(msg, Release):
            try:
                pipeline.release_memory()
                conn.send(Released("memory released"))
            except Exception as exc:  # noqa: BLE001
                conn.send(Released(f"release failed: {exc}"))
        elif isinstance(msg, Stop):
            return


class WorkerHandle:
    """The supervisor's side of one worker process."""

    def __init__(self, backend: str, weights: Path | None, results_dir: Path, options: dict[str, Any]) -> None:
        ctx = mp.get_context("spawn")  # never fork: the parent holds ZeroMQ sockets and threads
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.pipe = PipeEnd(self.conn)
        self.cancel_event = ctx.Event()
        self.process = ctx.Process(
            target=worker_main,
            args=(child_conn, self.cancel_event, backend, str(weights) if weights else None, str(results_dir), options),
            name="step1x3d-worker",
            daemon=True,
        )
        self.process.start()
        child_conn.close()  # so that the worker's death reads as EOF on our end
        self.started = time.monotonic()
        self.ready = False
        self.retiring = False
        self.name = backend
        self.capabilities: dict[str, Any] = {}
        self.device = "unknown"

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def fileno(self) -> int:
        return self.conn.fileno()

    def send(self, msg: WireMessage) -> bool:
        try:
            self.pipe.send(msg)
            return True
        except (OSError, ValueError):
            return False

    def run(self, job_id: str, request: QueuedRequest, want_glb: bool) -> bool:
        """Hand a job over: its request, each encoded image straight from the buffer it arrived in."""
        return self.send(RunJob.of(job_id, request, want_glb))

    def receive(self) -> tuple[list[WireMessage], bool]:
        """Everything the worker has sent so far, and whether it is still alive (and speaking our protocol)."""
        messages: list[WireMessage] = []
        try:
            while self.pipe.poll(0):
                messages.append(self.pipe.recv())
        except (EOFError, OSError, ProtocolError):
            return messages, False  # a process writing anything else into the pipe is treated as dead
        return messages, True

    def exit_description(self) -> str:
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        if code is None:
            return "the worker stopped answering"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = " (often the system's out-of-memory killer)" if -code == signal.SIGKILL else ""
            return f"the worker process was killed by {name}{hint}"
        return f"the worker process exited with status {code}"

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5.0)
        self.conn.close()

    def stop(self, timeout_s: float = 3.0) -> None:
        self.send(Stop())
        self.process.join(timeout=timeout_s)
        self.kill()


__all__ = ["WorkerHandle", "worker_main"]

"""The job server: a ROUTER socket, a bounded queue and one supervised worker process.

One thread runs everything here (a ``zmq.Poller`` over the socket and the
worker's pipe), so job bookkeeping needs no locks. The worker runs the
pipeline; this process only validates, queues, relays progress and serves
results from disk, so a crashing or hung job can never take the socket down.

The loop never does per-pixel work: a submit is checked from its headers and
queued with its images still encoded (the worker decodes them), so it reads
every client's messages promptly however large they are, and the queue is
bounded in bytes as well as in jobs (``max_queue_bytes``). A job's terminal
state is decided here only: in particular a result the worker staged becomes
the job's result (``ResultStore.commit``) when this loop hears ``done``, and is
discarded if the job ends any other way.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Callable, Sequence

import zmq

from blender_addon.protocol import messages as m
from blender_addon.protocol.codec import ProtocolError, decode, encode_message, typed
from blender_addon.protocol.errors import Step1X3DError
from blender_addon.protocol.schema import WireMessage
from blender_addon.protocol.limits import MiB
from blender_addon.protocol.settings import advertised_ranges

from .. import __version__
from .config import ServerConfig
from .intake import Refusal, build_request, submit_bytes, submit_fingerprint
from . import pipe
from .jobs import Job, JobError, JobTable
from .progress import ProgressModel, stage_weights
from ..result_asset import plain
from .result_store import ResultStore, ResultStoreError
from .security import enable_curve_server
from .supervisor import Supervisor
from .engine import Engine

log = logging.getLogger("step1x3d.server")

POLL_MS = 100
MAX_PEERS = 256  # peers told about a shutdown
EXPIRY_CHECK_S = 60.0
DISK_RETRY_S = 60.0  # retry hint for a submit refused for low disk space
# Clients announce submits above this size ("reserve") and upload once room is held: several large
# uploads at once can then never hold more than max_queue_bytes in this process.
RESERVE_ABOVE_BYTES = 8 * 1024 * 1024
RESERVATION_TTL_S = 120.0  # room held for an announced upload that never came is given back after this
PROBE_TOKEN = f"{m.AUTO_TOKEN_PREFIX}probe"  # an unsolicited pong that checks a client is still connected


class StartupError(Step1X3DError):
    """The server cannot start (bad config, port in use, backend failed to load): code ``startup_failed``.

    A subclass because ``step1x3d serve`` and embedding code catch this family to exit cleanly.
    """

    default_code = "startup_failed"


def bind_failure(host: str, port: int, err: int) -> str:
    """One sentence for a failed bind (pyzmq's own text repeats the address)."""
    if err == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use (another server?); stop that one or pass another --port"
    return f"cannot listen on {host}:{port}: {os.strerror(err)}"


class JobServer:
    def __init__(self, config: ServerConfig) -> None:
        config.check()
        self.config = config
        self.limits = config.limits
        self.store = ResultStore(config.results_dir)
        self.jobs = JobTable(config.limits.max_queue)
        self.context: zmq.Context | None = None
        self.socket: zmq.Socket | None = None
        self._authenticator: Any = None
        # The engine (local worker process, or Ray Serve) and the backend's health.
        self.supervisor = Supervisor(config, on_backend_error=self._fail_queued)
        self._progress: dict[str, ProgressModel] = {}
        self._peers: "OrderedDict[bytes, float]" = OrderedDict()
        self._vram_requests: list[bytes] = []
        self._release_pending = False
        self._stop_requested = threading.Event()
        self._stopping_since: float | None = None
        self._last_expiry_check = 0.0
        self._avg_job_s = 10.0  # running average of job durations, for busy retry hints
        self.started = time.monotonic()
        self.bound_port: int | None = None
        # New on every start, sent in welcome and pong: a client that sees it change knows its
        # server restarted (even within its offline timeout) and re-attaches its jobs.
        self.instance_id = uuid.uuid4().hex[:16]
        self._client_names: dict[bytes, str] = {}  # peer -> the name its hello gave, for the log
        self._last_orphan_check = 0.0
        self._reservations: dict[str, tuple[int, float]] = {}  # job id -> (bytes, monotonic expiry)
        # Every message a client may send, and the method that answers it (looked up by class).
        self._handlers: dict[type[WireMessage], Callable[[bytes, Any], None]] = {
            m.Hello: self._on_hello,
            m.Submit: self._on_submit,
            m.Reserve: self._on_reserve,
            m.Attach: self._on_attach,
            m.Cancel: self._on_cancel,
            m.Fetch: self._on_fetch,
            m.Close: self._on_close,
            m.Ping: self._on_ping,
            m.FreeVram: self._on_free_vram,
        }

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Bind the socket, recover results from disk and start the worker."""
        self.context = zmq.Context()
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # Sending to a peer that went away must be an error we can see, not a silent drop.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # Hard transport cap well above the advertised per-frame limit: frames between the two get a
        # proper "too_large" error; only absurd ones are cut off by libzmq (which drops the peer).
        sock.setsockopt(zmq.MAXMSGSIZE, self.limits.max_total_bytes)
        hb_ms = int(self.config.heartbeat_s * 1000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, hb_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, hb_ms * 5)
        sock.setsockopt(zmq.HEARTBEAT_TTL, hb_ms * 5)
        sock.setsockopt(zmq.SNDHWM, 10_000)
        if self.config.curve_enabled:
            assert self.config.server_key is not None and self.config.allow_keys is not None
            self._authenticator = enable_curve_server(
                self.context, sock, self.config.server_key, self.config.allow_keys
            )
        try:
            if self.config.port == 0:
                host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
                self.bound_port = sock.bind_to_random_port(f"tcp://{host}")
            else:
                sock.bind(self.config.endpoint)
                self.bound_port = self.config.port
        except zmq.ZMQError as exc:
            sock.close(0)
            self._close_context()
            raise StartupError(bind_failure(self.config.host, self.config.port, exc.errno or 0)) from None
        self.socket = sock
        for job_id, _mtime in self.store.scan(clean_tmp=True).items():
            self.jobs.add_done(job_id)
        self._expire_results(time.time())
        self.supervisor.start()
        log.info("listening on %s (backend %s)", self.endpoint, self.backend_name)

    @property
    def worker(self) -> Engine | None:
        """The engine now running (None between a death and its restart)."""
        return self.supervisor.engine

    @property
    def backend_error(self) -> JobError | None:
        return self.supervisor.backend_error

    @property
    def backend_name(self) -> str:
        return self.supervisor.backend_name

    @property
    def endpoint(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"tcp://{host}:{self.bound_port}"

    def request_stop(self) -> None:
        """Ask the loop to shut down gracefully (safe from a signal handler or another thread)."""
        self._stop_requested.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            if signum == signal.SIGINT and self._stop_requested.is_set():
                raise KeyboardInterrupt  # a second Ctrl-C: stop now (close() still kills the worker)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def serve_forever(self) -> int:
        """Run until stopped. Returns a process exit status (non-zero: the backend never loaded)."""
        assert self.socket is not None
        try:
            while True:
                if self._stop_requested.is_set() and self._stopping_since is None:
                    self._begin_shutdown()
                if self._stopping_since is not None and self._shutdown_finished():
                    return 0
                error = self.backend_error
                if error is not None and self.supervisor.gave_up:
                    log.error("%s", error.message)
                    return 2
                self._poll_once(POLL_MS)
                self._tick()
        finally:
            self.close()

    def close(self) -> None:
        self.supervisor.stop()
        if self.socket is not None:
            self.socket.close(0)
            self.socket = None
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        self._close_context()

    def _close_context(self) -> None:
        if self.context is not None:
            self.context.term()
            self.context = None

    # ----------------------------------------------------------------- event loop

    def _poll_once(self, timeout_ms: int) -> None:
        assert self.socket is not None
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        if self.worker is not None:
            poller.register(self.worker.fileno(), zmq.POLLIN)
        try:
            ready = dict(poller.poll(timeout_ms))
        except zmq.ZMQError as exc:
            if exc.errno == errno.EINTR:
                return
            raise
        if self.socket in ready:
            # Bounded batch so a flood from one client cannot starve the worker's messages.
            for _ in range(64):
                try:
                    frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_client_frames(frames)
        if self.worker is not None and self.worker.fileno() in ready:
            self._on_worker_readable()

    def _tick(self) -> None:
        now = time.monotonic()
        if self.worker is not None:
            for job in self.jobs.active_jobs():  # cancels reach the engine however they were requested
                if job.cancel_requested is not None:
                    self.worker.cancel(job.job_id)
        running = self.jobs.get(self.jobs.running) if self.jobs.running else None
        if running is not None and running.cancel_requested is not None:
            if now - running.cancel_requested > self.config.cancel_grace_s:
                log.warning("job %s ignored its cancel for %.1f s; killing the worker", running.job_id, self.config.cancel_grace_s)
                self._kill_worker_and_finish(m.CANCELLED, running.cancel_error)
        if self.supervisor.check_loading(now):
            self._drop_worker()
        if time.time() - self._last_expiry_check > EXPIRY_CHECK_S:
            self._expire_results(time.time())
        if now - self._last_orphan_check > self.config.heartbeat_s:
            self._check_orphans(now)
        self._dispatch()

    # ----------------------------------------------------------------- sending

    def _send(self, peer: bytes, msg: WireMessage) -> bool:
        return self._send_frames(peer, encode_message(msg))

    def _send_frames(self, peer: bytes, frames: Sequence[Any]) -> bool:
        return self._deliver(peer, frames) == 0

    def _deliver(self, peer: bytes, frames: Sequence[Any]) -> int:
        """Send to one peer; 0, or the errno (EHOSTUNREACH: its connection is gone)."""
        assert self.socket is not None
        try:
            self.socket.send_multipart([peer, *frames], zmq.NOBLOCK, copy=False)
            return 0
        except zmq.ZMQError as exc:
            # EHOSTUNREACH: the peer is gone (ROUTER_MANDATORY); EAGAIN: it stopped reading.
            if exc.errno not in (errno.EHOSTUNREACH, errno.EAGAIN):
                log.warning("send failed: %s", exc)
            self._peers.pop(peer, None)
            return exc.errno or -1

    def _notify(self, job: Job, msg: WireMessage) -> None:
        frames = encode_message(msg)
        for peer in list(job.subscribers):
            err = self._deliver(peer, frames)
            if err == 0:
                job.last_delivered = time.monotonic()
            elif err != errno.EAGAIN:  # a client too busy to read is still there; a gone one is not
                job.subscribers.discard(peer)

    def _client_label(self, peer: bytes) -> str:
        name = self._client_names.get(peer)
        return f"{name} ({peer.hex()})" if name else peer.hex()

    def _error(self, peer: bytes, code: str, message: str, job_id: str | None = None, retryable: bool = False) -> None:
        self._send(peer, m.ErrorEvent(job_id, code, message, retryable))

    def _state(self, job: Job) -> m.StateChanged:
        msg = m.StateChanged(job.job_id, job.state)
        if job.error is not None:
            msg.code, msg.message, msg.retryable = job.error.code, job.error.message, job.error.retryable
        if job.state == m.QUEUED:
            msg.queue_position = self.jobs.queue_position(job.job_id)
        return msg

    # ----------------------------------------------------------------- client messages

    def _on_client_frames(self, frames: list[zmq.Frame]) -> None:
        if len(frames) < 2:
            return  # ROUTER always prepends the identity; anything shorter is not a message
        peer = frames[0].bytes
        self._peers[peer] = time.monotonic()
        self._peers.move_to_end(peer)
        while len(self._peers) > MAX_PEERS:
            self._client_names.pop(self._peers.popitem(last=False)[0], None)
        try:
            raw = decode([f.buffer for f in frames[1:]], self.limits)
        except ProtocolError as exc:
            self._error(peer, exc.code, exc.message, exc.job_id)
            return
        if raw.type not in m.CLIENT_TYPES:
            self._error(peer, "unknown_type", f"{raw.type!r} is not a message a client sends")
            return
        try:
            msg = typed(raw)  # parts checked against what the message class declares
        except ProtocolError as exc:
            if raw.type == m.SUBMIT and exc.job_id is not None and m.valid_job_id(exc.job_id):
                self._reject(peer, exc.job_id, exc.code, exc.message)  # the job's content, not the framing
            else:
                self._error(peer, exc.code, exc.message, exc.job_id)
            return
        handler = self._handlers[type(msg)]
        try:
            handler(peer, msg)
        except Exception as exc:  # noqa: BLE001 - one bad request must never stop the server
            log.exception("handling %s failed", msg.TYPE)
            self._error(peer, "internal_error", f"the server failed to handle {msg.TYPE}: {exc}")

    def _on_hello(self, peer: bytes, msg: m.Hello) -> None:
        if msg.client:
            self._client_names[peer] = msg.client[:64]
        self._send(peer, self._welcome())

    def _welcome(self) -> m.Welcome:
        worker = self.worker if self.worker is not None and self.worker.ready else None
        caps: dict[str, Any] = dict(worker.capabilities) if worker is not None else {"loading": True}
        active = worker.name if worker is not None else self.backend_name
        error = self.backend_error
        return m.Welcome(
            server_version=__version__,
            protocol_version=m.PROTOCOL_VERSION,
            backends={active: plain(caps)},
            active_backend=active,
            limits=self.limits.to_wire(),
            device=worker.device if worker is not None else "loading",
            settings=advertised_ranges(),
            content_filter=bool(self.config.backend_options.get("content_filter")),
            backend_error={"code": error.code, "message": error.message} if error is not None else None,
            instance_id=self.instance_id,
            orphan_grace_s=self.config.orphan_grace_s,
            min_free_bytes=self.config.min_free_bytes,
            reserve_above_bytes=RESERVE_ABOVE_BYTES,
        )

    def _reject(self, peer: bytes, job_id: str, code: str, message: str, retry_after: float | None = None) -> None:
        retry = round(retry_after, 1) if retry_after is not None else None
        self._send(peer, m.Rejected(job_id, code, message, retry))

    def _on_submit(self, peer: bytes, msg: m.Submit) -> None:
        job_id = msg.job_id
        if not m.valid_job_id(job_id):
            self._reject(peer, job_id[:64], "bad_job_id", m.ERROR_CODES["bad_job_id"])
            return
        existing = self.jobs.get(job_id)
        if existing is not None:
            known = existing.settle_fingerprint()
            if known is not None and known != submit_fingerprint(msg):
                self._reject(peer, job_id, "job_id_conflict", f"job id {job_id} is already used by a different job")
                return
            # Same job again (a retry after a lost reply): never run it twice, just re-subscribe.
            existing.subscribers.add(peer)
            self._send(peer, m.Accepted(job_id, self.jobs.queue_position(job_id)))
            self._replay(peer, existing)
            return
        self._reservations.pop(job_id, None)  # its room was held for this upload, which has arrived
        refusal = self._refusal(job_id, submit_bytes(msg))
        if refusal is not None:
            self._reject(peer, job_id, *refusal)
            return
        caps = self.worker.capabilities if self.worker is not None and self.worker.ready else None
        try:
            request = build_request(msg, self.limits, caps)
        except Refusal as exc:
            self._reject(peer, job_id, exc.code, exc.message)
            return
        # Not hashed now (about 1 GB/s): the fingerprint is computed when first needed (jobs.py).
        job = Job(job_id=job_id, fingerprint=None, request=request, want_glb=msg.want_glb)
        job.subscribers.add(peer)
        job.client = self._client_label(peer)
        self.jobs.add(job)
        log.info("job %s accepted from %s (%d ahead)", job_id, job.client, self.jobs.queue_position(job_id))
        self._send(peer, m.Accepted(job_id, self.jobs.queue_position(job_id)))
        self._notify(job, self._state(job))
        self._dispatch()

    def _refusal(self, job_id: str, size: int) -> tuple[str, str, float | None] | None:
        """Why a new job of ``size`` bytes cannot be taken now (code, sentence, retry hint), or None.

        Capacity before content: a flood of submits is refused without hashing or parsing any image.
        The byte budget counts the waiting jobs and the uploads reserved but not yet arrived.
        """
        if self._stopping_since is not None:
            return "shutting_down", "the server is shutting down; submit again once it is back", None
        if self.worker is not None and self.worker.unavailable is not None:
            return ("busy", *self.worker.unavailable)  # e.g. the Ray cluster is gone
        if self.backend_error is not None:
            return self.backend_error.code, self.backend_error.message, None
        low_disk = self._low_disk()
        if low_disk is not None:
            return "disk_full", low_disk, DISK_RETRY_S
        budget = self.limits.max_queue_bytes
        if size > budget:
            return (
                "too_large",
                f"the job's images and mesh are {size / MiB:.0f} MiB; this server queues at most "
                f"{budget / MiB:.0f} MiB (limit max_queue_bytes)",
                None,
            )
        reserved = self._reserved_bytes(exclude=job_id)
        waiting_bytes = self.jobs.queued_bytes + reserved
        slots = len(self.jobs.queue) + len(self._reservations) - (job_id in self._reservations)
        if slots >= self.jobs.max_queue or waiting_bytes + size > budget:
            retry = self._retry_after()
            return (
                "busy",
                f"the server is busy ({slots} jobs, {waiting_bytes / MiB:.0f} MiB waiting or on their way); "
                f"try again in about {retry:.0f} s",
                retry,
            )
        return None

    def _reserved_bytes(self, exclude: str | None = None) -> int:
        """Bytes of announced uploads not yet arrived (expired reservations are dropped here)."""
        now = time.monotonic()
        for job_id in [j for j, (_, until) in self._reservations.items() if until < now]:
            del self._reservations[job_id]
        return sum(size for j, (size, _) in self._reservations.items() if j != exclude)

    def _on_reserve(self, peer: bytes, msg: m.Reserve) -> None:
        """Hold room for a large upload before it is sent, so concurrent uploads never exceed the budget."""
        job_id, size = msg.job_id, msg.bytes
        if not m.valid_job_id(job_id):
            self._reject(peer, job_id[:64], "bad_job_id", m.ERROR_CODES["bad_job_id"])
            return
        if self.jobs.get(job_id) is not None or size <= 0:
            self._send(peer, m.Reserved(job_id, 0))  # a resubmission is answered without room
            return
        refusal = self._refusal(job_id, size)
        if refusal is not None:
            self._reject(peer, job_id, *refusal)
            return
        self._reservations[job_id] = (size, time.monotonic() + RESERVATION_TTL_S)
        self._send(peer, m.Reserved(job_id, size))

    def _retry_after(self) -> float:
        """When a queue slot should free up: when the running job ends (its ETA, else the average job)."""
        running = self.jobs.get(self.jobs.running) if self.jobs.running else None
        remaining = self._avg_job_s
        if running is not None:
            model = self._progress.get(running.job_id)
            if model is not None and model.eta_s is not None:
                remaining = model.eta_s
            elif running.started is not None:
                remaining = self._avg_job_s - (time.monotonic() - running.started)
        return float(min(max(remaining, 1.0), 3600.0))

    def _replay(self, peer: bytes, job: Job) -> None:
        """What a (re-)attaching client missed: the state, the latest progress, and result-ready."""
        self._send(peer, self._state(job))
        if job.state == m.RUNNING and job.last_progress is not None:
            self._send(peer, job.last_progress)
        if job.state == m.DONE:
            self._send(peer, m.ResultReady(job.job_id))

    def _lookup(self, peer: bytes, msg: m.Attach | m.Cancel | m.Fetch | m.Close) -> Job | None:
        job_id = msg.job_id
        job = self.jobs.get(job_id) if m.valid_job_id(job_id) else None
        if job is None:
            self._error(peer, "unknown_job", f"no job {job_id!r} on this server (never submitted, closed, or lost in a restart)", job_id[:64])
        return job

    def _on_attach(self, peer: bytes, msg: m.Attach) -> None:
        job = self._lookup(peer, msg)
        if job is not None:
            job.subscribers.add(peer)
            self._replay(peer, job)

    def _on_cancel(self, peer: bytes, msg: m.Cancel | m.Close) -> None:
        job = self._lookup(peer, msg)
        if job is None:
            return
        job.subscribers.add(peer)
        if job.terminal:
            self._send(peer, self._state(job))  # cancel after the end: just say how it ended
        elif job.state == m.QUEUED:
            self._finish(job, m.CANCELLED, None)
        elif job.cancel_requested is None:
            job.cancel_requested = time.monotonic()
            if self.worker is not None:
                self.worker.cancel_event.set()  # the pipeline sees it at its next progress() call

    def _on_fetch(self, peer: bytes, msg: m.Fetch) -> None:
        job = self._lookup(peer, msg)
        if job is None:
            return
        if job.state == m.EXPIRED:
            self._error(peer, "expired", f"the result of job {job.job_id} was kept past the retention time and deleted", job.job_id)
            return
        if job.state != m.DONE:
            self._error(peer, "not_ready", f"job {job.job_id} is {job.state}; there is no result to fetch", job.job_id)
            return
        try:
            frames = self.store.read(job.job_id)
        except ResultStoreError as exc:
            self._error(peer, "internal_error", str(exc), job.job_id)
            return
        self._send_frames(peer, frames)

    def _on_close(self, peer: bytes, msg: m.Close) -> None:
        job = self._lookup(peer, msg)
        if job is None:
            return
        if not job.terminal:
            # Closing a live job means nobody wants it any more: cancel first, forget when it ends.
            job.close_requested = True
            self._on_cancel(peer, msg)
        if job.terminal:
            self._forget(job)
        self._send(peer, m.Closed(job.job_id))

    def _forget(self, job: Job) -> None:
        self.jobs.remove(job.job_id)
        self.store.delete(job.job_id)
        self.store.discard_staged(job.job_id)
        self._progress.pop(job.job_id, None)

    def _on_ping(self, peer: bytes, msg: m.Ping) -> None:
        status = {
            "queued": len(self.jobs.queue),
            "queued_bytes": self.jobs.queued_bytes,
            "running": self.jobs.running or "",
            "worker_pid": self.worker.pid if self.worker is not None else 0,
            "worker_ready": bool(self.worker is not None and self.worker.ready),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "stopping": self._stopping_since is not None,
        }
        self._send(peer, m.Pong(token=msg.token, status=status, instance_id=self.instance_id))

    def _on_free_vram(self, peer: bytes, msg: m.FreeVram) -> None:
        if peer not in self._vram_requests:  # one pending request per client, however often it asks
            self._vram_requests.append(peer)
        self._release_if_idle()

    def _release_if_idle(self) -> None:
        if not self._vram_requests or self._release_pending or self.jobs.running:
            return
        if self.worker is None or not self.worker.ready:
            for peer in self._vram_requests:
                self._send(peer, m.VramFreed("no backend is loaded"))
            self._vram_requests.clear()
            return
        self._release_pending = self.worker.send(pipe.Release())

    # ----------------------------------------------------------------- worker

    def _on_worker_readable(self) -> None:
        handle, messages, alive = self.supervisor.receive()
        for msg in messages:
            if self.worker is not handle:
                return  # a handler replaced the worker; the old one's remaining news is moot
            if not self.supervisor.note(msg):
                self._on_job_report(msg)
        if not alive and self.worker is handle:
            self._on_worker_died()

    def _on_job_report(self, msg: WireMessage) -> None:
        """What the engine says about a job (or a free-VRAM request): the server's bookkeeping."""
        if isinstance(msg, pipe.JobProgress):
            self._on_progress(msg.job_id, msg.stage, msg.step, msg.total, msg.message)
        elif isinstance(msg, pipe.JobDone):
            job = self.jobs.get(msg.job_id)
            if job is None or job.terminal or job.cancel_error is not None:
                self.store.discard_staged(msg.job_id)  # nobody wants it (an orphan finished before its cancel)
                if job is not None and not job.terminal:
                    self._finish(job, m.CANCELLED, job.cancel_error)
                return
            try:
                self.store.commit(job.job_id)  # the worker staged it; only now is it the job's result
            except ResultStoreError as exc:
                log.error("%s", exc)
                self._finish(job, m.FAILED, JobError(exc.code, str(exc), exc.retryable))
                return
            self._finish(job, m.DONE, None)
        elif isinstance(msg, pipe.JobCancelled):
            job = self.jobs.get(msg.job_id)
            if job is not None and not job.terminal:
                self._finish(job, m.CANCELLED, job.cancel_error)
        elif isinstance(msg, pipe.JobFailure):
            job = self.jobs.get(msg.job_id)
            if job is not None and not job.terminal:
                self._finish(job, m.FAILED, JobError(msg.code, msg.message, msg.retryable))
        elif isinstance(msg, pipe.Released):
            self._release_pending = False
            for peer in self._vram_requests:
                self._send(peer, m.VramFreed(msg.message))
            self._vram_requests.clear()

    def _on_progress(self, job_id: str, stage: str, step: int, total: int, message: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.state != m.RUNNING:
            return
        model = self._progress.get(job_id)
        if model is None:
            model = self._progress[job_id] = ProgressModel(
                stage_weights(self.worker.capabilities if self.worker else {}), job.started or time.monotonic()
            )
        fraction, eta = model.update(stage, step, total, time.monotonic())
        job.last_progress = m.Progress(job_id, stage, step, total, round(fraction, 4), eta, message)
        self._notify(job, job.last_progress)

    def _on_worker_died(self) -> None:
        description, was_ready = self.supervisor.died()
        self._drop_worker()
        running = self.jobs.get(self.jobs.running) if self.jobs.running else None
        if running is not None:
            if running.cancel_requested is not None:
                self._finish(running, m.CANCELLED, running.cancel_error)
            else:
                self._finish(
                    running,
                    m.FAILED,
                    JobError("worker_crashed", f"The job crashed the worker: {description}. The next job gets a fresh worker.", True),
                )
        self.supervisor.restart_after(description, was_ready, stopping=self._stopping_since is not None)

    def _kill_worker_and_finish(self, state: str, error: JobError | None) -> None:
        running = self.jobs.get(self.jobs.running) if self.jobs.running else None
        self._drop_worker()
        if running is not None and not running.terminal:
            self._finish(running, state, error)
        if self._stopping_since is None and self.backend_error is None:
            self.supervisor.start()

    def _drop_worker(self) -> None:
        """The engine is gone (or killed now): end what it was running besides the oldest job, answer free-VRAM."""
        self.supervisor.drop()
        # An engine with several slots took its other running jobs down with it; the callers end the oldest.
        for other in self.jobs.active_jobs()[1:]:
            if other.cancel_requested is not None:
                self._finish(other, m.CANCELLED, None)
            else:
                self._finish(other, m.FAILED, JobError("worker_crashed", "the engine running the job stopped; submit it again", True))
        if self._release_pending:  # a dead process holds no memory: answer the free-VRAM request
            self._release_pending = False
            for peer in self._vram_requests:
                self._send(peer, m.VramFreed("the worker restarted, which released its memory"))
            self._vram_requests.clear()

    def _fail_queued(self, error: JobError) -> None:
        """The backend cannot run jobs: every queued job fails with its reason."""
        for job in self.jobs.queued_jobs():
            self._finish(job, m.FAILED, error)

    def _dispatch(self) -> None:
        if self.worker is None or len(self.jobs.active) >= self.worker.slots or not self.worker.ready or self._stopping_since is not None:
            self._release_if_idle()
            return
        if self._release_pending:
            return  # let free-VRAM finish before the next job loads its models again
        job = self.jobs.next_queued()
        if job is None:
            self._release_if_idle()
            return
        request = job.request
        if request is None:  # never expected: queued jobs keep their request until this point
            self._finish(job, m.FAILED, JobError("internal_error", "the job lost its request before it could start"))
            return
        # Cleared here, by the supervisor, only after the previous job's outcome arrived: a late
        # cancel for that job can never leak into this one.
        self.worker.cancel_event.clear()
        self.jobs.start(job)
        if not self.worker.run(job.job_id, request, job.want_glb):
            self._kill_worker_and_finish(m.FAILED, JobError("worker_crashed", "the worker could not take the job", True))
            return
        log.info("job %s started (client %s)", job.job_id, job.client or "unknown")
        self._notify(job, self._state(job))
        for queued in self.jobs.queued_jobs():
            self._notify(queued, self._state(queued))
        self._dispatch()  # engines with several slots take the next job at once

    def _finish(self, job: Job, state: str, error: JobError | None) -> None:
        was_running = job.state == m.RUNNING
        self.jobs.finish(job, state, error)
        how = "after running" if was_running else "after waiting"
        why = f" ({error.code}: {error.message})" if error is not None and state != m.DONE else ""
        log.info("job %s %s %s %.1f s%s (client %s)", job.job_id, state, how, job.waited_or_ran_s, why, job.client or "unknown")
        if state != m.DONE and was_running:
            # A worker killed after staging its result but before reporting "done" must not leave
            # something a restart could take for this job's result: the job ended another way.
            self.store.discard_staged(job.job_id)
        self._progress.pop(job.job_id, None)
        if was_running and job.started is not None and state == m.DONE:
            self._avg_job_s = 0.7 * self._avg_job_s + 0.3 * (time.monotonic() - job.started)
        if state == m.DONE:
            self._notify(job, self._state(job))
            self._notify(job, m.ResultReady(job.job_id))
        else:
            self._notify(job, self._state(job))
        if job.close_requested:
            self._forget(job)
        self._dispatch()

    # ----------------------------------------------------------------- clients that went away

    def _check_orphans(self, now: float) -> None:
        """Cancel live jobs none of whose clients is still connected after ``orphan_grace_s``.

        A subscriber counts as gone when a message to it bounces (ROUTER_MANDATORY: its connection
        closed, or ZeroMQ's heartbeat timed it out). Subscribers of jobs nothing reached lately are
        probed with a ``pong`` whose token starts with ``auto-`` (clients drop those silently), so
        a queued or quietly running job learns it too.
        """
        self._last_orphan_check = now
        grace = self.config.orphan_grace_s
        if grace <= 0:
            return
        live = self.jobs.live_jobs()
        quiet = {peer for job in live if now - job.last_delivered > self.config.heartbeat_s for peer in job.subscribers}
        if quiet:
            probe = encode_message(m.Pong(token=PROBE_TOKEN, instance_id=self.instance_id))
            gone = {peer for peer in quiet if self._deliver(peer, probe) == errno.EHOSTUNREACH}
            for job in live:
                job.subscribers -= gone
        for job in live:
            if job.subscribers:
                job.orphaned_since = None
                continue
            job.orphaned_since = job.orphaned_since or now
            if now - job.orphaned_since >= grace and job.cancel_error is None:
                self._cancel_orphan(job, grace)

    def _cancel_orphan(self, job: Job, grace: float) -> None:
        error = JobError(
            "cancelled",
            f"no client stayed connected to job {job.job_id} for {grace:.0f} s (the server's --orphan-grace); "
            "it was cancelled and its result discarded",
        )
        log.info("job %s has had no client for %.0f s; cancelling it", job.job_id, grace)
        job.cancel_error = error
        if job.state == m.QUEUED:
            self._finish(job, m.CANCELLED, error)
        elif job.cancel_requested is None:
            job.cancel_requested = time.monotonic()
            if self.worker is not None:
                self.worker.cancel_event.set()

    # ----------------------------------------------------------------- disk space

    def _low_disk(self) -> str | None:
        """One sentence when the results folder's disk is below ``min_free_bytes``, else None."""
        need = self.config.min_free_bytes
        if need <= 0:
            return None
        try:
            free = shutil.disk_usage(self.store.root).free
        except OSError:
            return None  # the folder is recreated at the next write; that write reports real trouble
        if free >= need:
            return None
        return (
            f"the server's results folder {self.store.root} has {free / MiB:.0f} MiB free, under the "
            f"{need / MiB:.0f} MiB it keeps free (--min-free-mib); free some space there and try again"
        )

    # ----------------------------------------------------------------- expiry and shutdown

    def _expire_results(self, now: float) -> None:
        self._last_expiry_check = now
        for job_id in self.store.expired(self.config.result_ttl_s, now):
            self.store.delete(job_id)
            job = self.jobs.get(job_id)
            if job is not None and job.state == m.DONE:
                # Done is already terminal; expiry replaces the stored result, not the outcome.
                job.state = m.EXPIRED
                job.error = JobError("expired", "the result was kept past the retention time and deleted")
                self._notify(job, self._state(job))

    def _begin_shutdown(self) -> None:
        self._stopping_since = time.monotonic()
        running = ", ".join(job.job_id for job in self.jobs.active_jobs())
        if running:
            log.info("shutting down: no new jobs; running %s, which get %.0f s to finish", running, self.config.shutdown_grace_s)
        else:
            log.info("shutting down: no job is running")
        frames = encode_message(m.ServerShutdown("the server is shutting down", self.config.shutdown_grace_s))
        for peer in list(self._peers):
            self._send_frames(peer, frames)
        for job in self.jobs.queued_jobs():
            self._finish(job, m.FAILED, JobError("server_stopped", "the server stopped before the job could start", True))

    def _shutdown_finished(self) -> bool:
        assert self._stopping_since is not None
        running = self.jobs.get(self.jobs.running) if self.jobs.running else None
        if running is None:
            return True
        waited = time.monotonic() - self._stopping_since
        if waited > self.config.shutdown_grace_s and running.cancel_requested is None:
            running.cancel_requested = time.monotonic()
            if self.worker is not None:
                self.worker.cancel_event.set()
        if waited > self.config.shutdown_grace_s + self.config.cancel_grace_s:
            self._kill_worker_and_finish(
                m.FAILED, JobError("server_stopped", "the server stopped before the job could finish", True)
            )
            return True
        return False


def run_server(config: ServerConfig) -> int:
    """Start, serve until SIGTERM/SIGINT, shut down cleanly; returns the exit status."""
    server = JobServer(config)
    server.start()
    server.install_signal_handlers()
    return server.serve_forever()

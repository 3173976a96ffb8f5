"""The gateway's Ray driver: a child process of the server that dispatches jobs to Ray Serve.

Why a process of its own: a Ray driver that loses its cluster can hang in or be ended by Ray
itself; here that only ends the bridge, which the server restarts like a crashed worker while
it tells clients ``busy`` with a retry hint. The server's event loop never touches Ray.

Per job, a thread calls the stage deployments through streaming handles
(``handle.options(stream=True)``), relays progress, and writes the result the replica streamed
back (its arrays came through Ray's object store) to the results folder under its staged name,
then reports ``done``; the server commits it, as with the local worker. A cancel cancels the
request; Serve raises ``CancelledError`` in the replica's generator, which stops the pipeline
between steps. A replica that dies mid-job fails the job with a retryable reason, or runs it
again (``retries``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from blender_addon.protocol.codec import encode_message
from blender_addon.protocol.errors import Step1X3DError
from blender_addon.protocol.schema import ProtocolError, WireMessage

from ..server import pipe
from ..server.intake import QueuedRequest
from ..server.pipe import PipeEnd
from ..server.result_store import DiskFull, ResultStore, ResultStoreError
from .serve_config import NEURAL_STAGES, SINGLE_STAGE, deployment_options, slots, stages_for, validate

log = logging.getLogger("step1x3d.scale")

RETRY_S = 5.0  # how often an unreachable cluster is tried again (and the retry hint clients get)
MONITOR_S = 1.0  # how often a connected cluster is checked
LOST_AFTER = 3  # failed checks in a row before the cluster counts as lost
EXIT_CLUSTER_LOST = 75  # the server restarts the bridge, which waits for the cluster to return
DESCRIBE_TIMEOUT_S = 120.0
CANCEL_FLUSH_S = 1.0


@dataclass
class _Job:
    job_id: str
    cancelled: bool = False
    response: Any = None  # the streaming response in flight, for cancel


def _gcs_reachable(address: str, timeout_s: float = 2.0) -> bool:
    """A TCP connect to the cluster's GCS: ``ray.init`` on a dead address hangs instead of failing."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return True  # not host:port (e.g. "auto"): let Ray resolve it
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def _replica_died(exc: BaseException) -> bool:
    from ray.exceptions import ActorUnavailableError, RayActorError
    from ray.serve.exceptions import DeploymentUnavailableError

    return isinstance(exc, (RayActorError, ActorUnavailableError, DeploymentUnavailableError))


class Bridge:
    def __init__(self, conn: Connection, settings: dict[str, Any]) -> None:
        self.conn = PipeEnd(conn)  # typed messages through the wire codec, never a pickle
        self.settings = settings
        self.app: dict[str, Any] = settings["app"]
        self.app_name: str = settings["app_name"]
        self.store = ResultStore(settings["results_dir"])
        self.retries = int(settings.get("retries", 0))
        self.stages = stages_for(self.app["args"])
        self.handles: dict[str, Any] = {}
        self.jobs: dict[str, _Job] = {}
        self._jobs_lock = threading.Lock()
        self.stopping = threading.Event()
        self.gcs_address: str | None = None
        self.split = False  # the neural pipeline runs geometry and texture on separate deployments

    # ----------------------------------------------------------------- plumbing

    def send(self, msg: WireMessage) -> None:
        try:
            self.conn.send(msg)  # PipeEnd: typed frames, locked against the job threads' sends
        except (OSError, ValueError):
            pass  # the server is gone; the parent watch ends us

    def serve(self) -> None:
        threading.Thread(target=self._connect_and_watch, name="ray-connect", daemon=True).start()
        threading.Thread(target=self._watch_parent, name="parent-watch", daemon=True).start()
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError, ProtocolError):
                break  # the server is gone (or the pipe carries something not ours)
            if isinstance(msg, pipe.RunJob):
                self._start(msg.job_id, msg.request(), msg.want_glb)
            elif isinstance(msg, pipe.CancelJob):
                self._cancel(msg.job_id)
            elif isinstance(msg, pipe.Release):
                threading.Thread(target=self._release, name="release", daemon=True).start()
            elif isinstance(msg, pipe.Stop):
                break
        self._cancel_all()
        time.sleep(CANCEL_FLUSH_S if self.jobs else 0.0)
        os._exit(0)  # Ray's own shutdown can take seconds; the replicas and the app live on

    def _watch_parent(self) -> None:
        """When the server dies (even by SIGKILL), cancel what we dispatched so replicas are not held."""
        parent = os.getppid()
        while os.getppid() == parent:
            time.sleep(0.5)
        self._cancel_all()
        time.sleep(CANCEL_FLUSH_S)  # cancels are sent asynchronously; let them leave before we exit
        os._exit(3)

    # ----------------------------------------------------------------- the cluster

    def _connect_and_watch(self) -> None:
        while not self.stopping.is_set():
            try:
                problem = self._connect()
            except Step1X3DError as exc:  # a bad config: its one sentence, as it is
                self.send(pipe.LoadFailed("bad_backend", str(exc)))
                return
            except Exception as exc:  # noqa: BLE001 - a failed deploy is one sentence for the operator
                self.send(pipe.LoadFailed("bad_backend", f"the Ray Serve application could not start: {type(exc).__name__}: {exc}"))
                return
            if problem is None:
                break
            self.send(pipe.Unavailable(problem, RETRY_S))
            time.sleep(RETRY_S)
        failures = 0
        while not self.stopping.is_set():
            time.sleep(MONITOR_S)
            failures = 0 if self.gcs_address is None or _gcs_reachable(self.gcs_address) else failures + 1
            if failures >= LOST_AFTER:
                self._cluster_lost()

    def _connect(self) -> str | None:
        """Join the cluster and deploy (or attach to) the application; a sentence if the cluster is unreachable."""
        address = self.settings.get("address")
        if address and not _gcs_reachable(address):
            return f"the Ray cluster at {address} is unreachable; jobs resume when it is back"
        validate({"applications": [{k: v for k, v in self.app.items()}]})
        import ray
        from ray import serve

        from .app import build_app

        if not ray.is_initialized():
            ray.init(address=address or None, log_to_driver=False, include_dashboard=False if not address else None)
        self.gcs_address = ray.get_runtime_context().gcs_address
        status = serve.status().applications.get(self.app_name)
        if status is None or str(status.status).rsplit(".", 1)[-1] != "RUNNING":
            args = {**self.app["args"], "overrides": deployment_options(self.app)}
            serve.run(build_app(args), name=self.app_name, route_prefix=None)
        self.handles = {name: serve.get_deployment_handle(name, self.app_name) for name in self.stages}
        info = self.handles[self.stages[0]].describe.remote().result(timeout_s=DESCRIBE_TIMEOUT_S)
        self.split = bool(info.get("split"))
        caps = dict(info["capabilities"])
        caps["engine"] = {"kind": "ray", "application": self.app_name, "deployments": list(self.stages),
                          "slots": slots(self.app)}
        device = str(caps.get("device") or "cpu")
        self.send(pipe.Ready(str(info["name"]), caps, device))
        log.info("Ray Serve application %s ready (%s)", self.app_name, ", ".join(self.stages))
        return None

    def _cluster_lost(self) -> None:
        reason = "the Ray cluster was lost while the job ran; submit it again once the server takes jobs again"
        with self._jobs_lock:
            lost = list(self.jobs)
        for job_id in lost:
            self.send(pipe.JobFailure(job_id, "worker_crashed", reason, True))
        self.send(pipe.Unavailable("the Ray cluster is unreachable; jobs resume when it is back", RETRY_S))
        log.error("lost the Ray cluster at %s; restarting the bridge", self.gcs_address)
        os._exit(EXIT_CLUSTER_LOST)

    # ----------------------------------------------------------------- jobs

    def _start(self, job_id: str, queued: QueuedRequest, want_glb: bool) -> None:
        with self._jobs_lock:
            self.jobs[job_id] = _Job(job_id)
        threading.Thread(target=self._run, args=(job_id, queued, want_glb), name=f"job-{job_id}", daemon=True).start()

    def _cancel(self, job_id: str) -> None:
        with self._jobs_lock:
            job = self.jobs.get(job_id)
            if job is None:
                return
            job.cancelled = True
            response = job.response
        if response is not None:
            response.cancel()

    def _cancel_all(self) -> None:
        with self._jobs_lock:
            ids = list(self.jobs)
        for job_id in ids:
            self._cancel(job_id)

    def _plan(self, queued: QueuedRequest) -> list[tuple[str, str]]:
        """(deployment, step) pairs: a neural full job goes geometry -> texture, anything else is one call."""
        if self.stages == (SINGLE_STAGE,):
            return [(SINGLE_STAGE, "all")]
        geometry, texture = NEURAL_STAGES
        mode = queued.settings.mode
        if mode == "geometry":
            return [(geometry, "all")]
        if mode == "texture":
            return [(texture, "all")]
        if not self.split:  # the pipeline cannot hand its geometry over: the whole job runs on Geometry
            return [(geometry, "all")]
        return [(geometry, "geometry"), (texture, "finish")]

    def _run(self, job_id: str, queued: QueuedRequest, want_glb: bool) -> None:
        from ray.serve.exceptions import RequestCancelledError

        job = self.jobs[job_id]
        try:
            for attempt in range(1 + self.retries):
                try:
                    self.send(self._attempt(job, queued, want_glb))
                    return
                except RequestCancelledError:
                    self.send(pipe.JobCancelled(job_id))
                    return
                except Exception as exc:  # noqa: BLE001 - every job ends with exactly one report
                    if job.cancelled:
                        self.send(pipe.JobCancelled(job_id))
                        return
                    if not _replica_died(exc):
                        self.send(pipe.JobFailure(job_id, "internal_error", f"the Ray engine failed: {type(exc).__name__}: {exc}", True))
                        return
                    if attempt < self.retries:
                        log.warning("the replica running job %s died; running it again", job_id)
                        continue
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    self.send(pipe.JobFailure(job_id, "worker_crashed",
                               f"The Ray replica running the job died ({first[:200]}); submit it again: "
                               "a healthy replica will take it.", True))
                    return
        finally:
            with self._jobs_lock:
                self.jobs.pop(job_id, None)

    def _attempt(self, job: _Job, queued: QueuedRequest, want_glb: bool) -> WireMessage:
        parts: list[Any] | None = None
        for deployment, step in self._plan(queued):
            handle = self.handles[deployment].options(stream=True, method_name="run")
            with self._jobs_lock:
                if job.cancelled:
                    return pipe.JobCancelled(job.job_id)
                job.response = response = handle.remote(job.job_id, queued, want_glb, step, parts)
            for item in response:
                kind = item[0]
                if kind == "progress":
                    self.send(pipe.JobProgress(job.job_id, *item[1:]))
                elif kind == "part":
                    parts = item[1]
                    break
                elif kind == "result":
                    try:
                        self.store.stage(job.job_id, encode_message(item[1]))
                    except DiskFull as exc:  # its own code and sentence (folder, space needed), as the local worker
                        return pipe.JobFailure(job.job_id, exc.code, exc.message, exc.retryable)
                    except (ResultStoreError, OSError) as exc:
                        return pipe.JobFailure(job.job_id, "internal_error", f"the result could not be written: {exc}", True)
                    return pipe.JobDone(job.job_id)
                elif kind == "failed":
                    return pipe.JobFailure(job.job_id, *item[1:])
                elif kind == "cancelled":
                    return pipe.JobCancelled(job.job_id)
        return pipe.JobFailure(job.job_id, "internal_error", "the replicas ended the job without a result", False)

    def _release(self) -> None:
        try:
            for handle in self.handles.values():
                handle.release.remote().result(timeout_s=DESCRIBE_TIMEOUT_S)
            self.send(pipe.Released("memory released"))
        except Exception as exc:  # noqa: BLE001
            self.send(pipe.Released(f"release failed: {exc}"))


def bridge_main(conn: Connection, settings: dict[str, Any]) -> None:
    """Entry point of the spawned bridge process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # shutdown is the server's call
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logging.basicConfig(level=int(settings.get("log_level", logging.INFO)), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Bridge(conn, settings).serve()


__all__ = ["Bridge", "bridge_main"]

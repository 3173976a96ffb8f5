"""The Ray Serve application: one deployment per stage, each loading its pipeline once per replica.

``build_app(args)`` is the application builder named in the config file
(``import_path: inference_server.scale.app:build_app``), so ``serve run config.yaml`` and
``serve deploy config.yaml`` build the same application the gateway deploys.

A replica's ``run`` is an async generator the gateway consumes through a streaming deployment
handle: ``("progress", stage, step, total, message)`` items while the job runs, then one outcome:
``("result", Result)`` (the typed message: arrays and PNG bytes, carried by Ray's object store),
``("part", [ref])`` (the geometry stage's output, left in the object store for the texture
stage), ``("failed", code, message, retryable)`` or ``("cancelled",)``. The pipeline runs in a
thread; when the gateway cancels the request, the generator sets the job's cancel event and the
pipeline stops at its next ``ctx.progress`` call, between steps.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import ray
from ray import serve

from blender_addon.protocol.errors import Step1X3DError

from ..pipeline.base import JobCancelled, JobContext, PipelineError
from ..pipeline.registry import create_pipeline
from ..server.intake import QueuedRequest
from ..server.job_runner import produce_result
from ..server.worker import PROGRESS_INTERVAL_S
from .serve_config import NEURAL_STAGES, SINGLE_STAGE, stages_for

CANCEL_WAIT_S = 30.0  # how long a cancelled request waits for its pipeline thread to stop


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


@serve.deployment(max_ongoing_requests=1, ray_actor_options={"num_cpus": 1})
class PipelineReplica:
    """One stage's replica: the pipeline is built once here and serves every job routed to it."""

    def __init__(
        self,
        stage: str,
        backend: str = "auto",
        weights: str | None = None,
        options: dict[str, Any] | None = None,
        records_dir: str | None = None,
        peers: Any = None,  # other stages' handles: bound only so Serve deploys them in this application
    ) -> None:
        self.stage = stage
        self.pipeline = create_pipeline(backend, weights, **(options or {}))
        self.capabilities = dict(self.pipeline.capabilities())
        context = serve.get_replica_context()
        self.replica_id = str(context.replica_id.unique_id)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.pid = os.getpid()
        self.records = Path(records_dir) / f"{stage}-{self.replica_id}.jsonl" if records_dir else None
        self.unhealthy: str | None = None

    # ----------------------------------------------------------------- Serve hooks

    def check_health(self) -> None:
        if self.unhealthy is not None:  # Serve replaces a replica whose health check raises
            raise RuntimeError(self.unhealthy)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.pipeline.name,
            "capabilities": self.capabilities,
            "stage": self.stage,
            "replica": self.replica_id,
            "node": self.node_id,
            "pid": self.pid,
            # Whether a full job can be split between the Geometry and Texture deployments.
            "split": callable(getattr(self.pipeline, "run_geometry", None)) and callable(getattr(self.pipeline, "finish", None)),
        }

    def release(self) -> str:
        self.pipeline.release_memory()
        return "memory released"

    # ----------------------------------------------------------------- jobs

    async def run(
        self, job_id: str, queued: QueuedRequest, want_glb: bool, step: str = "all", parts: list[Any] | None = None
    ) -> AsyncIterator[tuple[Any, ...]]:
        """``step``: "all" runs the whole pipeline here; "geometry" / "finish" split a neural job between the
        Geometry and Texture deployments (``parts``: the geometry stage's object-store reference)."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        cancel = threading.Event()
        last_time = [0.0]
        last_stage = [""]

        def put(item: tuple[Any, ...]) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        def report(stage: str, done: int, total: int, message: str) -> None:
            now = time.monotonic()
            # Throttled like the local worker: never drop a stage change or a stage's last step.
            if stage != last_stage[0] or done >= total or now - last_time[0] >= PROGRESS_INTERVAL_S:
                last_time[0], last_stage[0] = now, stage
                put(("progress", stage, int(done), int(total), str(message)))

        ctx = JobContext(callback=report, cancel_event=cancel)
        started = time.time()
        work = loop.run_in_executor(None, self._work, job_id, queued, want_glb, step, parts, ctx, put)
        outcome = "unknown"
        progress: list[Any] = []
        try:
            while True:
                item = await items.get()
                if item[0] != "progress":
                    outcome = str(item[0])
                else:
                    progress = list(item[1:4])
                yield item
                if item[0] != "progress":
                    break
            await work
        except asyncio.CancelledError:
            # The gateway cancelled the request: stop the pipeline between steps, then let Serve finish it.
            cancel.set()
            outcome = "cancelled"
            try:
                await asyncio.wait_for(asyncio.shield(work), CANCEL_WAIT_S)
            except asyncio.TimeoutError:
                outcome = "cancel_ignored"
            raise
        finally:
            self._record(job_id, step, started, outcome, progress)

    def _work(
        self,
        job_id: str,
        queued: QueuedRequest,
        want_glb: bool,
        step: str,
        parts: list[Any] | None,
        ctx: JobContext,
        put: Callable[[tuple[Any, ...]], None],
    ) -> None:
        """The pipeline thread: exactly one outcome item, whatever happens."""
        pipeline: Any = self.pipeline
        try:
            if step == "geometry":
                request = queued.decode()
                part = pipeline.run_geometry(request, ctx)
                ctx.check_cancelled()
                put(("part", [ray.put(part)]))  # stays in the object store; the texture replica fetches it
                return
            run = pipeline.run
            if step == "finish":
                if not parts:
                    raise PipelineError("the texture stage got no geometry to finish", code="internal_error")
                geometry = ray.get(parts[0])
                run = lambda request, c: pipeline.finish(request, geometry, c)  # noqa: E731
            put(("result", produce_result(run, self.pipeline.name, queued, job_id, want_glb, ctx)))
        except JobCancelled:
            put(("cancelled",))
        except Step1X3DError as exc:  # the one error type: its own code and sentence reach the client
            put(("failed", exc.code, exc.message, exc.retryable))
        except BaseException as exc:  # noqa: BLE001 - the gateway must hear an outcome, whatever happened
            if _is_out_of_memory(exc):
                # Only a fresh process reliably gets the memory back: fail the health check, Serve replaces us.
                self.unhealthy = "the replica ran out of memory and asks to be replaced"
                put(("failed", "out_of_memory",
                     "The job ran out of memory; lower the face count or texture size and try again.", True))
            else:
                put(("failed", "internal_error", f"the backend failed: {type(exc).__name__}: {exc}", False))

    def _record(self, job_id: str, step: str, started: float, outcome: str, progress: list[Any]) -> None:
        """One line per job in this replica's own record (which replica ran what, when, how it ended)."""
        if self.records is None:
            return
        line = {"job_id": job_id, "step": step, "stage": self.stage, "replica": self.replica_id,
                "node": self.node_id, "pid": self.pid, "start": started, "end": time.time(), "outcome": outcome,
                "last_progress": progress}
        self.records.parent.mkdir(parents=True, exist_ok=True)
        with open(self.records, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")


def build_app(args: dict[str, Any]) -> Any:
    """The application for ``args`` (``backend``, ``weights``, ``options``, ``records_dir``).

    Deployment options (replicas, autoscaling, resources) come from the config file's
    ``deployments`` section, which Serve applies to these deployments by name; the gateway
    passes the same options as ``overrides`` when it deploys the application itself.
    """
    overrides: dict[str, dict[str, Any]] = dict(args.get("overrides") or {})
    common = {
        "backend": str(args.get("backend", "auto")),
        "weights": args.get("weights"),
        "options": dict(args.get("options") or {}),
        "records_dir": args.get("records_dir"),
    }

    def deployment(name: str) -> Any:
        replica: Any = PipelineReplica  # a serve.Deployment (mypy sees the class)
        return replica.options(name=name, **overrides.get(name, {}))

    names = stages_for(args)
    if names == (SINGLE_STAGE,):
        return deployment(SINGLE_STAGE).bind(stage=SINGLE_STAGE, **common)
    geometry, texture = NEURAL_STAGES
    return deployment(geometry).bind(stage=geometry, peers=[deployment(texture).bind(stage=texture, **common)], **common)


__all__ = ["PipelineReplica", "build_app"]

"""Job records and the bounded queue. Pure bookkeeping: no sockets, no processes.

A job belongs to its client-chosen id, not to a connection: any number of
peers may subscribe to it (the submitter, and whoever attaches later).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from blender_addon.protocol.errors import Step1X3DError
from blender_addon.protocol.messages import DONE, QUEUED, RUNNING, TERMINAL_STATES, Progress

from .intake import QueuedRequest

MAX_FINISHED_KEPT = 1000  # finished jobs remembered in memory (done ones also live on disk)


@dataclass
class JobError:
    code: str
    message: str
    retryable: bool = False


@dataclass
class Job:
    job_id: str
    # Digest of the submit (intake.fingerprint), computed when first needed: on a resubmission of the
    # id, or before the request is dropped (start, finish). None for results recovered from disk.
    fingerprint: str | None
    request: QueuedRequest | None = None  # images still encoded; dropped once handed to the worker
    want_glb: bool = False
    state: str = QUEUED
    subscribers: set[bytes] = field(default_factory=set)
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    last_progress: Progress | None = None  # replayed to a client that attaches mid-job
    error: JobError | None = None
    cancel_requested: float | None = None
    close_requested: bool = False  # closed while running: forget it (and any result) once it ends
    client: str = ""  # who submitted it, for the log
    cancel_error: JobError | None = None  # why the server cancelled it on its own (no client left)
    orphaned_since: float | None = None  # when its last subscriber was found gone
    last_delivered: float = 0.0  # when a message for it last reached a subscriber

    @property
    def waited_or_ran_s(self) -> float:
        """Seconds it ran (or, if it never started, waited), for the log."""
        end = self.finished if self.finished is not None else time.monotonic()
        return end - (self.started if self.started is not None else self.created)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def settle_fingerprint(self) -> str | None:
        """The submit's fingerprint, hashed from the queued request the first time it is asked for."""
        if self.fingerprint is None and self.request is not None:
            self.fingerprint = self.request.fingerprint()
        return self.fingerprint


class JobTable:
    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self.jobs: "OrderedDict[str, Job]" = OrderedDict()
        self.queue: deque[str] = deque()
        # Running jobs, oldest first: one with the local engine, up to its slots with the Ray engine.
        self.active: list[str] = []

    @property
    def running(self) -> str | None:
        """The oldest running job (the only one with the local engine)."""
        return self.active[0] if self.active else None

    def active_jobs(self) -> list[Job]:
        return [self.jobs[j] for j in self.active if j in self.jobs]

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    @property
    def queued_bytes(self) -> int:
        """Bytes the waiting jobs hold (their encoded images and meshes); the running job holds none here."""
        total = 0
        for job_id in self.queue:
            job = self.jobs.get(job_id)
            if job is not None and job.request is not None:
                total += job.request.nbytes
        return total

    def add(self, job: Job) -> None:
        self.jobs[job.job_id] = job
        self.queue.append(job.job_id)

    def add_done(self, job_id: str) -> Job:
        """A result found on disk at startup."""
        job = Job(job_id=job_id, fingerprint=None, state=DONE, finished=time.monotonic())
        self.jobs[job_id] = job
        return job

    def queue_position(self, job_id: str) -> int:
        """Jobs ahead of this one (0: it runs next, or is running)."""
        if self.running == job_id:
            return 0
        try:
            return self.queue.index(job_id) + (1 if self.running else 0)
        except ValueError:
            return 0

    def next_queued(self) -> Job | None:
        while self.queue:
            job = self.jobs.get(self.queue.popleft())
            if job is not None and job.state == QUEUED:
                return job
        return None

    def start(self, job: Job) -> None:
        job.settle_fingerprint()  # the last moment the images are here to hash
        job.state = RUNNING
        job.started = time.monotonic()
        job.request = None
        self.active.append(job.job_id)

    def finish(self, job: Job, state: str, error: JobError | None = None) -> None:
        """Move ``job`` to its one terminal state."""
        if state not in TERMINAL_STATES:
            raise ValueError(f"{state} is not a terminal state")
        if job.terminal:
            # A bookkeeping bug, never a client's fault: the handler's catch-all answers internal_error.
            raise Step1X3DError(f"job {job.job_id} is already {job.state}; refusing {state}", "internal_error")
        job.settle_fingerprint()
        job.state = state
        job.error = error
        job.finished = time.monotonic()
        job.request = None
        if job.job_id in self.active:
            self.active.remove(job.job_id)
        if job.job_id in self.queue:
            self.queue.remove(job.job_id)
        self._forget_old()

    def remove(self, job_id: str) -> Job | None:
        job = self.jobs.pop(job_id, None)
        if job_id in self.queue:
            self.queue.remove(job_id)
        return job

    def queued_jobs(self) -> list[Job]:
        return [self.jobs[j] for j in self.queue if j in self.jobs]

    def live_jobs(self) -> list[Job]:
        """The running jobs and the queued ones."""
        return self.active_jobs() + self.queued_jobs()

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.terminal and j.state != DONE]
        for job in finished[: max(0, len(finished) - MAX_FINISHED_KEPT)]:
            del self.jobs[job.job_id]


__all__ = ["Job", "JobError", "JobTable"]

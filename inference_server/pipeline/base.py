"""The contract between the job server and every backend.

A backend turns a :class:`JobRequest` into an :class:`~inference_server.assets.Asset`.
It reports progress and checks for cancellation through a :class:`JobContext`,
which the server backs with its worker-to-supervisor channel. Stages call
``ctx.progress(...)`` at every step; that call raises :class:`JobCancelled`
when the job was cancelled, so cancellation lands between steps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from blender_addon.protocol.errors import Step1X3DError
from blender_addon.protocol.settings import JobSettings, SettingsError, view_slots

from ..assets import Asset, MeshData


class JobCancelled(Exception):
    """Raised inside a pipeline when its job has been cancelled.

    Control flow, not a failure: it unwinds the job to the worker, which reports the ``cancelled``
    state the client asked for. So it is deliberately not a :class:`Step1X3DError` (no error code,
    nothing to tell the artist), and code that catches failures never swallows a cancel.
    """


class PipelineError(Step1X3DError):
    """A backend's failure, told as one sentence with a code from ``ERROR_CODES``
    (e.g. ``bad_image``, ``not_implemented``, ``out_of_memory``, ``weights_missing``, ``bad_mesh``).

    A thin subclass because the worker and the Ray replicas catch this family: its code and
    sentence go to the client as they are, where any other exception is an ``internal_error``.
    """

    default_code = "pipeline_error"


@dataclass
class JobRequest:
    images: list[np.ndarray]  # decoded reference images, (H, W, 4) uint8 RGBA, front view first
    settings: JobSettings = field(default_factory=JobSettings)
    mesh: MeshData | None = None  # texture-only jobs: the client's mesh, glTF frame
    image_names: list[str] = field(default_factory=list)  # for naming and provenance

    def view_slots(self) -> list[np.ndarray | None]:
        """The images in their view slots (front, right, back, left), ``None`` for a view not given."""
        try:
            return view_slots(list(self.images), self.settings.views)
        except SettingsError as exc:
            raise PipelineError(str(exc), code="bad_request") from None


ProgressCallback = Callable[[str, int, int, str], None]  # (stage, step, total, message)


class JobContext:
    """Progress and cancellation for one running job.

    ``progress(stage, step, total, message)`` forwards to the callback and raises
    :class:`JobCancelled` once ``cancel()`` was called (from any thread).
    """

    def __init__(self, callback: ProgressCallback | None = None, cancel_event: threading.Event | None = None) -> None:
        self._callback = callback
        self._cancel = cancel_event or threading.Event()
        self.started = time.monotonic()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled("cancelled")

    def progress(self, stage: str, step: int = 0, total: int = 1, message: str = "") -> None:
        self.check_cancelled()
        if self._callback is not None:
            self._callback(stage, step, total, message)


class Pipeline(Protocol):
    """A backend. ``name`` is what ``--backend`` and ``welcome`` call it."""

    name: str

    def capabilities(self) -> dict[str, Any]:
        """What this backend can do: {"modes": [...], "pbr": bool, "device": str, ...}."""
        ...

    def run(self, request: JobRequest, ctx: JobContext) -> Asset:
        ...

    def release_memory(self) -> None:
        """Drop caches and GPU memory (the protocol's free-VRAM command)."""
        ...

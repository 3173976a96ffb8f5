"""The supervisor <-> engine pipe: typed messages through the wire's own codec, never pickles.

The server talks to its engine process (the local worker, or the Ray bridge) over a
``multiprocessing`` pipe. Every message is a dataclass below, encoded by
``blender_addon.protocol.codec.encode_message`` into frames, and each frame goes over the pipe
with ``send_bytes`` (a frame count first); the receiver reads them with ``recv_bytes`` and
decodes with the same strict decoder as a client message (limits, types, declared parts). So a
process that writes garbage, or a pickle, into the pipe gets a refusal, not code execution:
``Connection.recv()`` (which unpickles) is never called. Encoded images and mesh arrays travel
as the frames they arrived in, without copies.

Supervisor -> engine: :class:`RunJob` (the queued request, images and mesh as parts),
:class:`CancelJob`, :class:`Release`, :class:`Stop`. Engine -> supervisor: :class:`Ready`,
:class:`LoadFailed`, :class:`JobProgress`, :class:`JobDone` (the result is staged on disk),
:class:`JobCancelled`, :class:`JobFailure`, :class:`Released`, :class:`Retiring`, :class:`Unavailable`.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, ClassVar

import numpy as np

from blender_addon.protocol.codec import decode, encode_message, typed
from blender_addon.protocol.limits import Limits, MiB
from blender_addon.protocol.result import CLIENT_MESH_ARRAYS, mesh_arrays, mesh_parts, mesh_specs
from blender_addon.protocol.schema import PartSpec, PartValue, ProtocolError, WireMessage, header_values, part_field
from blender_addon.protocol.settings import JobSettings

from ..assets import MeshData
from .intake import QueuedRequest

# Between our own processes: as large as a client's submit may be, with room for its images.
PIPE_LIMITS = Limits(max_frames=64, max_header_bytes=16 * MiB, max_frame_bytes=4096 * MiB, max_total_bytes=8192 * MiB)
_COUNT = struct.Struct("<I")


# ---------------------------------------------------------------- supervisor -> engine


@dataclass
class RunJob(WireMessage):
    """Run one job: its validated request, images still encoded (the engine decodes them)."""

    TYPE: ClassVar[str] = "run"
    PARTS: ClassVar[tuple[PartSpec, ...]] = (PartSpec("image{i}"),) + mesh_specs("mesh", CLIENT_MESH_ARRAYS)
    job_id: str
    want_glb: bool
    settings: dict[str, Any]
    image_names: list[str]
    max_pixels: int
    images: list[PartValue] = part_field(list)
    mesh: dict[str, np.ndarray] | None = part_field()

    @classmethod
    def of(cls, job_id: str, request: QueuedRequest, want_glb: bool) -> "RunJob":
        mesh = None if request.mesh is None else {a: getattr(request.mesh, a) for a in CLIENT_MESH_ARRAYS}
        return cls(job_id, want_glb, request.settings.to_wire(), list(request.image_names), request.max_pixels,
                   list(request.images), mesh)

    def request(self) -> QueuedRequest:
        mesh = None
        if self.mesh is not None:
            m = self.mesh
            mesh = MeshData(positions=np.array(m["positions"]), faces=np.array(m["faces"]),
                            uvs=_copy(m.get("uvs")), normals=_copy(m.get("normals")))
        images = [image for image in self.images if not isinstance(image, np.ndarray)]  # bytes by PARTS
        return QueuedRequest(images=images, settings=JobSettings.from_wire(self.settings), mesh=mesh,
                             image_names=list(self.image_names), max_pixels=self.max_pixels)

    def wire_parts(self) -> list[tuple[str, PartValue]]:
        parts: list[tuple[str, PartValue]] = [(f"image{i}", data) for i, data in enumerate(self.images)]
        return parts + (mesh_parts("mesh", self.mesh, CLIENT_MESH_ARRAYS) if self.mesh else [])

    @classmethod
    def from_wire(cls, fields: dict[str, Any], parts: dict[str, PartValue]) -> "RunJob":  # type: ignore[override]
        images = [parts[f"image{i}"] for i in range(sum(name.startswith("image") for name in parts))]
        return cls(**header_values(cls, fields), images=images, mesh=mesh_arrays("mesh", parts, CLIENT_MESH_ARRAYS) or None)


def _copy(value: np.ndarray | None) -> np.ndarray | None:
    return None if value is None else np.array(value)  # writable, owning its memory (the frame is read-only)


@dataclass
class CancelJob(WireMessage):
    TYPE: ClassVar[str] = "cancel_job"
    job_id: str


@dataclass
class Release(WireMessage):
    """Free the backend's caches (GPU memory) once no job runs."""

    TYPE: ClassVar[str] = "release"


@dataclass
class Stop(WireMessage):
    TYPE: ClassVar[str] = "stop"


# ---------------------------------------------------------------- engine -> supervisor


@dataclass
class Ready(WireMessage):
    TYPE: ClassVar[str] = "ready"
    name: str
    capabilities: dict[str, Any]
    device: str


@dataclass
class LoadFailed(WireMessage):
    TYPE: ClassVar[str] = "load_failed"
    code: str
    message: str


@dataclass
class JobProgress(WireMessage):
    TYPE: ClassVar[str] = "job_progress"
    job_id: str
    stage: str
    step: int
    total: int
    message: str = ""


@dataclass
class JobDone(WireMessage):
    """The job's result is staged on disk (``ResultStore.stage``); the server commits it."""

    TYPE: ClassVar[str] = "job_done"
    job_id: str


@dataclass
class JobCancelled(WireMessage):
    TYPE: ClassVar[str] = "job_cancelled"
    job_id: str


@dataclass
class JobFailure(WireMessage):
    TYPE: ClassVar[str] = "job_failed"
    job_id: str
    code: str
    message: str
    retryable: bool = False


@dataclass
class Released(WireMessage):
    TYPE: ClassVar[str] = "released"
    message: str = ""


@dataclass
class Retiring(WireMessage):
    """The engine exits after this job (an out-of-memory): hand it nothing more; a fresh one follows."""

    TYPE: ClassVar[str] = "retiring"


@dataclass
class Unavailable(WireMessage):
    """The engine cannot take jobs for a reason that passes (a lost Ray cluster); clients get ``busy``."""

    TYPE: ClassVar[str] = "unavailable"
    message: str
    retry_after_s: float = field(default=5.0)


PIPE_MESSAGES: dict[str, type[WireMessage]] = {
    cls.TYPE: cls
    for cls in (RunJob, CancelJob, Release, Stop, Ready, LoadFailed, JobProgress, JobDone, JobCancelled, JobFailure,
                Released, Retiring, Unavailable)
}


class PipeEnd:
    """One end of the pipe: typed messages in and out, frames as ``send_bytes``/``recv_bytes``, never a pickle.

    ``send`` holds a lock so that threads (the Ray bridge's) never interleave two messages' frames.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self.conn.fileno()

    def poll(self, timeout: float = 0.0) -> bool:
        return self.conn.poll(timeout)

    def send(self, msg: WireMessage) -> None:
        """Raises OSError/ValueError when the other end is gone (callers decide what that means)."""
        frames = encode_message(msg)
        with self._lock:
            self.conn.send_bytes(_COUNT.pack(len(frames)))
            for frame in frames:
                self.conn.send_bytes(frame)

    def recv(self) -> WireMessage:
        """The next message; EOFError/OSError when the other end is gone, ProtocolError for anything not ours."""
        head = self.conn.recv_bytes(_COUNT.size + 1)  # a pickle (or any longer first frame) is refused right here
        if len(head) != _COUNT.size:
            raise ProtocolError("the pipe carried something that is not a frame count")
        (count,) = _COUNT.unpack(head)
        if not 1 <= count <= PIPE_LIMITS.max_frames:
            raise ProtocolError(f"the pipe announced {count} frames")
        frames = [self.conn.recv_bytes() for _ in range(count)]
        return typed(decode(frames, PIPE_LIMITS, check_schema=False), PIPE_MESSAGES)

    def close(self) -> None:
        self.conn.close()


__all__ = [
    "CancelJob", "JobCancelled", "JobDone", "JobFailure", "JobProgress", "LoadFailed", "PIPE_MESSAGES", "PipeEnd",
    "Ready", "Release", "Released", "Retiring", "RunJob", "Stop", "Unavailable",
]

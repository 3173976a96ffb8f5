"""Message vocabulary of the wire protocol: one dataclass per message, versions, states, job ids.

Every message is one msgpack header frame followed by zero or more raw binary
frames ("parts"); each class below declares its header fields (the dataclass
fields: annotation = wire type, no default = required) and its parts
(``PARTS``, see :class:`.schema.PartSpec`). :mod:`.codec` encodes an instance
and decodes frames back into one; ``docs/protocol.md`` is the prose version.
Adding a field to a message is one line here plus its use.
Pure Python plus numpy: no bpy, no torch, no zmq.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .result import CLIENT_MESH_ARRAYS, Result, mesh_arrays, mesh_parts, mesh_specs
from .schema import PartSpec, PartValue, ProtocolError, WireMessage, check_header, field_specs, header_values, part_field

# Major versions must match exactly; a newer minor only adds optional fields.
PROTOCOL_VERSION: tuple[int, int] = (1, 0)

# ---------------------------------------------------------------- client -> server


@dataclass
class Hello(WireMessage):
    TYPE: ClassVar[str] = "hello"
    client: str | None = None  # a name for the server's log


@dataclass
class Submit(WireMessage):
    """A job: images ``image0..N`` (encoded files, front view first), and for ``mode: texture`` the mesh to paint."""

    TYPE: ClassVar[str] = "submit"
    PARTS: ClassVar[tuple[PartSpec, ...]] = (PartSpec("image{i}", code="bad_image"),) + mesh_specs(
        "mesh", CLIENT_MESH_ARRAYS, code="bad_mesh"
    )

    job_id: str
    settings: dict[str, Any] | None = None  # JobSettings.to_wire()
    image_names: list[str] | None = None
    want_glb: bool = False
    images: list[PartValue] = part_field(list)
    mesh: dict[str, np.ndarray] | None = part_field()  # positions, faces (+ uvs, normals), glTF frame

    def wire_parts(self) -> list[tuple[str, PartValue]]:
        parts: list[tuple[str, PartValue]] = [(f"image{i}", data) for i, data in enumerate(self.images)]
        return parts + (mesh_parts("mesh", self.mesh, CLIENT_MESH_ARRAYS) if self.mesh else [])

    @classmethod
    def from_wire(cls, fields: dict[str, Any], parts: dict[str, PartValue]) -> "Submit":  # type: ignore[override]
        images = [value for name, value in parts.items() if name.startswith("image")]
        if [name for name in parts if name.startswith("image")] != [f"image{i}" for i in range(len(images))]:
            raise ProtocolError("images must be parts named image0, image1, ... in order", job_id=fields.get("job_id"))
        mesh = mesh_arrays("mesh", parts, CLIENT_MESH_ARRAYS)
        return cls(**header_values(cls, fields), images=images, mesh=mesh or None)


@dataclass
class Cancel(WireMessage):
    TYPE: ClassVar[str] = "cancel"
    job_id: str


@dataclass
class Attach(WireMessage):
    TYPE: ClassVar[str] = "attach"
    job_id: str


@dataclass
class Fetch(WireMessage):
    TYPE: ClassVar[str] = "fetch"
    job_id: str


@dataclass
class Close(WireMessage):
    TYPE: ClassVar[str] = "close"
    job_id: str


@dataclass
class Ping(WireMessage):
    TYPE: ClassVar[str] = "ping"
    token: str | None = None


@dataclass
class FreeVram(WireMessage):
    TYPE: ClassVar[str] = "free_vram"


@dataclass
class Reserve(WireMessage):
    """Ask for room before uploading a large submit (see ``Welcome.reserve_above_bytes``)."""

    TYPE: ClassVar[str] = "reserve"
    job_id: str
    bytes: int


# ---------------------------------------------------------------- server -> client


@dataclass
class Welcome(WireMessage):
    TYPE: ClassVar[str] = "welcome"
    server_version: str
    protocol_version: tuple[int, int]
    backends: dict[str, dict[str, Any]]
    active_backend: str
    limits: dict[str, int]
    device: str
    settings: dict[str, Any] = field(default_factory=dict)  # advertised ranges and defaults
    content_filter: bool = False  # job images pass a content filter (refusals: content_refused)
    backend_error: dict[str, str] | None = None
    instance_id: str = ""  # new on every server start: clients re-attach when it changes ("" from older servers)
    orphan_grace_s: float | None = None  # a job with no client connected this long is cancelled (0: never)
    min_free_bytes: int | None = None  # new jobs are refused (disk_full) below this much free disk
    # Submits whose parts exceed this many bytes are announced with "reserve" first and sent on
    # "reserved": the server holds at most max_queue_bytes of queued and announced uploads together.
    reserve_above_bytes: int | None = None


@dataclass
class Accepted(WireMessage):
    TYPE: ClassVar[str] = "accepted"
    job_id: str
    queue_position: int  # jobs ahead; 0 = next or running


@dataclass
class Rejected(WireMessage):
    TYPE: ClassVar[str] = "rejected"
    job_id: str
    code: str
    message: str
    retry_after_s: float | None = None  # with "busy"


@dataclass
class Progress(WireMessage):
    TYPE: ClassVar[str] = "progress"
    NULLABLE: ClassVar[frozenset[str]] = frozenset({"eta_s"})
    job_id: str
    stage: str
    step: int
    total: int
    fraction: float  # overall, 0..1
    eta_s: float | None = None  # nil early on
    message: str = ""


@dataclass
class StateChanged(WireMessage):
    """A job's state (``state`` on the wire); ``code``/``message``/``retryable`` say why it failed or was cancelled."""

    TYPE: ClassVar[str] = "state"
    job_id: str
    state: str
    code: str | None = None
    message: str | None = None
    retryable: bool | None = None
    queue_position: int | None = None


@dataclass
class ResultReady(WireMessage):
    TYPE: ClassVar[str] = "result_ready"
    job_id: str


@dataclass
class Closed(WireMessage):
    TYPE: ClassVar[str] = "closed"
    job_id: str


@dataclass
class Pong(WireMessage):
    TYPE: ClassVar[str] = "pong"
    token: str | None = None
    status: dict[str, Any] | None = None  # queued jobs and bytes, running job, worker pid, uptime
    instance_id: str | None = None


@dataclass
class VramFreed(WireMessage):
    TYPE: ClassVar[str] = "vram_freed"
    message: str = ""


@dataclass
class ErrorEvent(WireMessage):
    """An ``error``: a request the server could not serve (or, from the client itself, a failed handshake)."""

    TYPE: ClassVar[str] = "error"
    NULLABLE: ClassVar[frozenset[str]] = frozenset({"job_id"})
    job_id: str | None
    code: str
    message: str
    retryable: bool = False


@dataclass
class ServerShutdown(WireMessage):
    TYPE: ClassVar[str] = "shutdown"
    message: str = ""
    deadline_s: float = 0.0


@dataclass
class Reserved(WireMessage):
    """Room for the job's upload is held: send the submit now (``bytes`` 0 for a job the server already has)."""

    TYPE: ClassVar[str] = "reserved"
    job_id: str
    bytes: int


CLIENT_MESSAGES: tuple[type[WireMessage], ...] = (Hello, Submit, Cancel, Attach, Fetch, Close, Ping, FreeVram, Reserve)
SERVER_MESSAGES: tuple[type[WireMessage], ...] = (
    Welcome, Accepted, Rejected, Progress, StateChanged, ResultReady, Result, Closed, Pong, VramFreed, ErrorEvent,
    ServerShutdown, Reserved,
)
MESSAGES: dict[str, type[WireMessage]] = {cls.TYPE: cls for cls in CLIENT_MESSAGES + SERVER_MESSAGES}

# Type names, for logs and the framing layer.
HELLO, SUBMIT, CANCEL, ATTACH, FETCH, CLOSE, PING, FREE_VRAM, RESERVE = (c.TYPE for c in CLIENT_MESSAGES)
(WELCOME, ACCEPTED, REJECTED, PROGRESS, STATE, RESULT_READY, RESULT, CLOSED, PONG, VRAM_FREED, ERROR, SHUTDOWN,
 RESERVED) = (c.TYPE for c in SERVER_MESSAGES)
CLIENT_TYPES = frozenset(c.TYPE for c in CLIENT_MESSAGES)
SERVER_TYPES = frozenset(c.TYPE for c in SERVER_MESSAGES)

# Ping tokens with this prefix are a client's own keep-alives; a pong carrying one is consumed by the
# connection, never shown. The server's connection probe (an unsolicited pong) uses one too.
AUTO_TOKEN_PREFIX = "auto-"

# Job states on the server. Exactly one terminal state per accepted job.
QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
EXPIRED = "expired"
TERMINAL_STATES = frozenset({DONE, FAILED, CANCELLED, EXPIRED})
JOB_STATES = frozenset({QUEUED, RUNNING}) | TERMINAL_STATES

# Error codes (``error.code``, ``rejected.code``, ``state.code``): one registry, in errors.py.
from .errors import ERROR_CODES  # noqa: E402  (re-exported: part of this module's public names)


# Job ids become file names in the results directory: keep them boring.
JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would let a trailing newline through

# Job ids become file names in the results directory: keep them boring.
JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would let a trailing newline through

# Header fields per message type, derived from the classes: name -> (accepted Python types, required).
FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    t: {f.name: (f.types, f.required) for f in field_specs(cls)} for t, cls in MESSAGES.items()
}


def check_fields(msg_type: str, fields: dict[str, Any]) -> str | None:
    """Return a one-line complaint about ``fields`` for ``msg_type``, or None when they are fine.

    Unknown extra fields are allowed (a newer minor version may add some).
    """
    cls = MESSAGES.get(msg_type)
    if cls is None:
        return f"unknown message type {msg_type!r}"
    return check_header(cls, fields)


def valid_job_id(job_id: Any) -> bool:
    return isinstance(job_id, str) and JOB_ID_RE.match(job_id) is not None


__all__ = [
    "PROTOCOL_VERSION",
    "CLIENT_MESSAGES",
    "SERVER_MESSAGES",
    "MESSAGES",
    "CLIENT_TYPES",
    "SERVER_TYPES",
    "TERMINAL_STATES",
    "JOB_STATES",
    "ERROR_CODES",
    "FIELDS",
    "Accepted", "Attach", "Cancel", "Close", "Closed", "ErrorEvent", "Fetch", "FreeVram", "Hello", "Ping", "Pong",
    "Progress", "Rejected", "Reserve", "Reserved", "Result", "ResultReady", "ServerShutdown", "StateChanged",
    "Submit", "VramFreed", "Welcome",
    "check_fields",
    "valid_job_id",
]

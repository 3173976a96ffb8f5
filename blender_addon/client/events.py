"""What a client hears from the server, as plain dataclasses (decoded from wire messages).

Pure Python + numpy: the Blender add-on consumes these from its timer poll step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from ..protocol import messages as m
from ..protocol.codec import Message

MESH_KEYS = ("positions", "faces", "uvs", "normals", "tangents")
MAP_NAMES = ("base_color", "orm", "normal")


@dataclass
class Welcome:
    server_version: str
    protocol_version: tuple[int, int]
    backends: dict[str, dict[str, Any]]
    active_backend: str
    limits: dict[str, int]
    device: str
    settings: dict[str, Any] = field(default_factory=dict)
    content_filter: bool = False  # the server refuses images its content filter flags (content_refused)
    backend_error: dict[str, str] | None = None
    instance_id: str = ""  # new on every server start ("" from older servers)
    orphan_grace_s: float | None = None  # jobs with no client connected this long are cancelled (0: never)
    min_free_bytes: int | None = None  # below this much free disk the server refuses new jobs (disk_full)
    reserve_above_bytes: int | None = None  # larger submits ask for room first (None: this server has no reserve)


@dataclass
class Accepted:
    job_id: str
    queue_position: int


@dataclass
class Rejected:
    job_id: str
    code: str
    message: str
    retry_after_s: float | None = None


@dataclass
class Progress:
    job_id: str
    stage: str
    step: int
    total: int
    fraction: float
    eta_s: float | None
    message: str = ""


@dataclass
class StateChanged:
    job_id: str
    state: str
    code: str = ""  # why, for failed/cancelled/expired
    message: str = ""
    retryable: bool = False
    queue_position: int | None = None


@dataclass
class ResultReady:
    job_id: str


@dataclass
class Result:
    job_id: str
    mesh: dict[str, Any]  # numpy arrays "positions", "faces", "uvs", "normals" (+ "tangents") and "smooth": bool
    lods: list[dict[str, Any]]
    textures: dict[str, bytes]  # PNG bytes keyed "base_color" / "orm" / "normal"
    material: dict[str, Any]  # factors + "maps": which textures exist
    glb: bytes | None
    timings: dict[str, float]
    provenance: dict[str, Any]
    notes: list[str]


@dataclass
class ErrorEvent:
    job_id: str | None
    code: str
    message: str
    retryable: bool = False


@dataclass
class Pong:
    token: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    instance_id: str = ""


@dataclass
class Closed:
    job_id: str


@dataclass
class VramFreed:
    message: str = ""


@dataclass
class ServerShutdown:
    message: str = ""
    deadline_s: float = 0.0


@dataclass
class Offline:
    """Synthesised by the client: nothing heard from the server for ``silent_s`` seconds."""

    address: str
    silent_s: float


@dataclass
class Reserved:
    """The server holds room for this job's upload: send the submit now."""

    job_id: str
    bytes: int


@dataclass
class Reconnected:
    """Synthesised by the client: a new connection to the server (it restarted, or the network dropped).

    The server may not know this client follows its jobs (or the jobs at all): re-attach them.
    """

    address: str
    reason: str


Event = Union[
    Welcome,
    Accepted,
    Rejected,
    Progress,
    StateChanged,
    ResultReady,
    Result,
    ErrorEvent,
    Pong,
    Closed,
    VramFreed,
    ServerShutdown,
    Offline,
    Reconnected,
    Reserved,
]


def _mesh_dict(prefix: str, info: dict[str, Any], parts: dict[str, Any]) -> dict[str, Any]:
    mesh: dict[str, Any] = {key: parts.get(f"{prefix}.{key}") for key in MESH_KEYS[:4]}
    if f"{prefix}.tangents" in parts:
        mesh["tangents"] = parts[f"{prefix}.tangents"]
    mesh["smooth"] = bool(info.get("smooth", True)) if isinstance(info, dict) else True
    if not isinstance(mesh["positions"], np.ndarray) or not isinstance(mesh["faces"], np.ndarray):
        raise ValueError(f"the result has no {prefix} positions/faces arrays")
    return mesh


def _result(msg: Message) -> Result:
    f, parts = msg.fields, msg.parts
    lods_info = f.get("lods") or []
    textures = {name: msg.part_bytes(f"map.{name}") for name in MAP_NAMES if f"map.{name}" in parts}
    return Result(
        job_id=f["job_id"],
        mesh=_mesh_dict("mesh", f["mesh"], parts),
        lods=[_mesh_dict(f"lod{i}", info, parts) for i, info in enumerate(lods_info)],
        textures=textures,
        material=dict(f.get("material") or {}),
        glb=msg.part_bytes("glb") if "glb" in parts else None,
        timings=dict(f.get("timings") or {}),
        provenance=dict(f.get("provenance") or {}),
        notes=[str(n) for n in f.get("notes") or []],
    )


def event_from_message(msg: Message) -> Event:
    """Map a decoded server message to its event; raises ValueError on a type a client never gets."""
    f = msg.fields
    t = msg.type
    if t == m.WELCOME:
        version = f["protocol_version"]
        return Welcome(
            server_version=f["server_version"],
            protocol_version=(int(version[0]), int(version[1])) if len(version) == 2 else (0, 0),
            backends=dict(f["backends"]),
            active_backend=f["active_backend"],
            limits=dict(f["limits"]),
            device=f["device"],
            settings=dict(f.get("settings") or {}),
            content_filter=bool(f.get("content_filter", False)),
            backend_error=f.get("backend_error"),
            instance_id=str(f.get("instance_id", "")),
            orphan_grace_s=float(f["orphan_grace_s"]) if "orphan_grace_s" in f else None,
            min_free_bytes=int(f["min_free_bytes"]) if "min_free_bytes" in f else None,
            reserve_above_bytes=int(f["reserve_above_bytes"]) if "reserve_above_bytes" in f else None,
        )
    if t == m.ACCEPTED:
        return Accepted(f["job_id"], int(f["queue_position"]))
    if t == m.REJECTED:
        retry = f.get("retry_after_s")
        return Rejected(f["job_id"], f["code"], f["message"], float(retry) if retry is not None else None)
    if t == m.PROGRESS:
        eta = f.get("eta_s")
        return Progress(
            f["job_id"], f["stage"], int(f["step"]), int(f["total"]), float(f["fraction"]),
            float(eta) if eta is not None else None, f.get("message", ""),
        )
    if t == m.STATE:
        return StateChanged(
            f["job_id"], f["state"], f.get("code", ""), f.get("message", ""), bool(f.get("retryable", False)),
            f.get("queue_position"),
        )
    if t == m.RESULT_READY:
        return ResultReady(f["job_id"])
    if t == m.RESULT:
        return _result(msg)
    if t == m.ERROR:
        return ErrorEvent(f.get("job_id"), f["code"], f["message"], bool(f.get("retryable", False)))
    if t == m.PONG:
        return Pong(f.get("token", ""), dict(f.get("status") or {}), str(f.get("instance_id", "")))
    if t == m.CLOSED:
        return Closed(f["job_id"])
    if t == m.RESERVED:
        return Reserved(f["job_id"], int(f["bytes"]))
    if t == m.VRAM_FREED:
        return VramFreed(f.get("message", ""))
    if t == m.SHUTDOWN:
        return ServerShutdown(f.get("message", ""), float(f.get("deadline_s", 0.0)))
    raise ValueError(f"a client does not expect {t!r} messages")


__all__ = [
    "Accepted",
    "Closed",
    "ErrorEvent",
    "Event",
    "Offline",
    "Pong",
    "Progress",
    "Reconnected",
    "Rejected",
    "Reserved",
    "Result",
    "ResultReady",
    "ServerShutdown",
    "StateChanged",
    "VramFreed",
    "Welcome",
    "event_from_message",
]

"""Message vocabulary of the wire protocol: versions, types, fields, states, error codes.

Every message is one msgpack header frame followed by zero or more raw binary
frames ("parts"); see :mod:`.codec` for the framing and ``docs/protocol.md``
for the prose version of this table. Pure Python: no bpy, no torch, no zmq.
"""

from __future__ import annotations

import re
from typing import Any

# Major versions must match exactly; a newer minor only adds optional fields.
PROTOCOL_VERSION: tuple[int, int] = (1, 0)

# Client -> server.
HELLO = "hello"
SUBMIT = "submit"
CANCEL = "cancel"
ATTACH = "attach"
FETCH = "fetch"
CLOSE = "close"
PING = "ping"
FREE_VRAM = "free_vram"
RESERVE = "reserve"  # ask for room before uploading a large submit (see welcome.reserve_above_bytes)
CLIENT_TYPES = frozenset({HELLO, SUBMIT, CANCEL, ATTACH, FETCH, CLOSE, PING, FREE_VRAM, RESERVE})

# Server -> client.
WELCOME = "welcome"
ACCEPTED = "accepted"
REJECTED = "rejected"
PROGRESS = "progress"
STATE = "state"
RESULT_READY = "result_ready"
RESULT = "result"
CLOSED = "closed"
PONG = "pong"
VRAM_FREED = "vram_freed"
ERROR = "error"
SHUTDOWN = "shutdown"
RESERVED = "reserved"  # room for the job's upload is held; send the submit now
SERVER_TYPES = frozenset(
    {WELCOME, ACCEPTED, REJECTED, PROGRESS, STATE, RESULT_READY, RESULT, CLOSED, PONG, VRAM_FREED, ERROR, SHUTDOWN,
     RESERVED}
)

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

# Header fields per message type: name -> (accepted Python types, required).
_STR = (str,)
_INT = (int,)
_NUM = (int, float)
_BOOL = (bool,)
_MAP = (dict,)
_LIST = (list,)

FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    HELLO: {"client": (_STR, False)},
    SUBMIT: {
        "job_id": (_STR, True),
        "settings": (_MAP, False),
        "image_names": (_LIST, False),
        "want_glb": (_BOOL, False),
    },
    CANCEL: {"job_id": (_STR, True)},
    ATTACH: {"job_id": (_STR, True)},
    FETCH: {"job_id": (_STR, True)},
    CLOSE: {"job_id": (_STR, True)},
    PING: {"token": (_STR, False)},
    FREE_VRAM: {},
    RESERVE: {"job_id": (_STR, True), "bytes": (_INT, True)},
    RESERVED: {"job_id": (_STR, True), "bytes": (_INT, True)},
    WELCOME: {
        "server_version": (_STR, True),
        "protocol_version": (_LIST, True),
        "backends": (_MAP, True),
        "active_backend": (_STR, True),
        "limits": (_MAP, True),
        "device": (_STR, True),
        "settings": (_MAP, False),
        "content_filter": (_BOOL, False),  # job images pass a content filter (refusals: content_refused)
        "backend_error": (_MAP, False),
        "instance_id": (_STR, False),  # new on every server start: clients re-attach when it changes
        "orphan_grace_s": (_NUM, False),  # a job with no client connected this long is cancelled (0: never)
        "min_free_bytes": (_INT, False),  # new jobs are refused (disk_full) below this much free disk
        # Submits whose parts exceed this many bytes are announced with "reserve" first and sent on
        # "reserved": the server holds at most max_queue_bytes of queued and announced uploads together.
        "reserve_above_bytes": (_INT, False),
    },
    ACCEPTED: {"job_id": (_STR, True), "queue_position": (_INT, True)},
    REJECTED: {
        "job_id": (_STR, True),
        "code": (_STR, True),
        "message": (_STR, True),
        "retry_after_s": (_NUM, False),
    },
    PROGRESS: {
        "job_id": (_STR, True),
        "stage": (_STR, True),
        "step": (_INT, True),
        "total": (_INT, True),
        "fraction": (_NUM, True),
        "eta_s": (_NUM + (type(None),), False),
        "message": (_STR, False),
    },
    STATE: {
        "job_id": (_STR, True),
        "state": (_STR, True),
        "code": (_STR, False),
        "message": (_STR, False),
        "retryable": (_BOOL, False),
        "queue_position": (_INT, False),
    },
    RESULT_READY: {"job_id": (_STR, True)},
    RESULT: {
        "job_id": (_STR, True),
        "mesh": (_MAP, True),
        "lods": (_LIST, False),
        "material": (_MAP, False),
        "timings": (_MAP, False),
        "provenance": (_MAP, False),
        "notes": (_LIST, False),
    },
    CLOSED: {"job_id": (_STR, True)},
    PONG: {"token": (_STR, False), "status": (_MAP, False), "instance_id": (_STR, False)},
    VRAM_FREED: {"message": (_STR, False)},
    ERROR: {
        "job_id": (_STR + (type(None),), False),
        "code": (_STR, True),
        "message": (_STR, True),
        "retryable": (_BOOL, False),
    },
    SHUTDOWN: {"message": (_STR, False), "deadline_s": (_NUM, False)},
}


def check_fields(msg_type: str, fields: dict[str, Any]) -> str | None:
    """Return a one-line complaint about ``fields`` for ``msg_type``, or None when they are fine.

    Unknown extra fields are allowed (a newer minor version may add some).
    """
    spec = FIELDS.get(msg_type)
    if spec is None:
        return f"unknown message type {msg_type!r}"
    for name, (types, required) in spec.items():
        if name not in fields:
            if required:
                return f"{msg_type} needs the field {name!r}"
            continue
        value = fields[name]
        # bool is an int subclass: do not let True pass as a number (or a number as a bool).
        if isinstance(value, bool) and bool not in types:
            return f"{msg_type}.{name} has the wrong type"
        if not isinstance(value, types):
            return f"{msg_type}.{name} has the wrong type"
    return None


def valid_job_id(job_id: Any) -> bool:
    return isinstance(job_id, str) and JOB_ID_RE.match(job_id) is not None


__all__ = [
    "PROTOCOL_VERSION",
    "CLIENT_TYPES",
    "SERVER_TYPES",
    "TERMINAL_STATES",
    "JOB_STATES",
    "ERROR_CODES",
    "FIELDS",
    "check_fields",
    "valid_job_id",
]

"""The one codec: typed messages <-> frames (one msgpack header frame + raw binary frames, "parts").

Both ends use :func:`encode_message` (a message dataclass from :mod:`.messages` to
frames) and :func:`decode_message` (frames to the dataclass, every check done:
limits, version, header field types, part names/kinds/dtypes/columns as the class
declares them). :func:`encode`/:func:`decode` are the framing layer underneath,
also what the hostile-input tests use to build malformed messages.

Header (a msgpack map, string keys only)::

    {"v": [major, minor], "type": "submit", <fields of that type>,
     "parts": [{"name": "image0", "kind": "bytes"},
               {"name": "mesh.positions", "kind": "array", "dtype": "float32", "shape": [N, 3]}]}

Part ``i`` travels in frame ``i + 1``. Arrays are little-endian, C-contiguous,
with a dtype from :data:`DTYPES`; their byte count must equal
``prod(shape) * itemsize``. Frames are handed to ZeroMQ as memoryviews so
large arrays and PNG files are sent without copies. Nothing is ever pickled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import msgpack
import numpy as np

from .limits import Limits
from .messages import MESSAGES, PROTOCOL_VERSION, check_fields, valid_job_id
from .schema import Buffer, PartSpec, PartValue, ProtocolError, WireMessage, check_header, find_spec

# Wire dtype name -> numpy dtype (always little-endian on the wire).
DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("<u1"),
    "uint16": np.dtype("<u2"),
    "uint32": np.dtype("<u4"),
    "int32": np.dtype("<i4"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}
MAX_NDIM = 4
MAX_PARTS_NAME = 64

@dataclass
class Message:
    """A decoded message: its type, header fields and named binary parts (in wire order)."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    parts: dict[str, PartValue] = field(default_factory=dict)
    version: tuple[int, int] = PROTOCOL_VERSION


def _wire_dtype(arr: np.ndarray) -> str:
    for name, dt in DTYPES.items():
        if arr.dtype.kind == dt.kind and arr.dtype.itemsize == dt.itemsize:
            return name
    raise ProtocolError(f"arrays of dtype {arr.dtype} cannot be sent; allowed: {', '.join(DTYPES)}")


def _array_buffer(arr: np.ndarray, wire: str) -> memoryview:
    target = DTYPES[wire]
    if arr.dtype != target or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=target)
    return memoryview(arr).cast("B") if arr.size else memoryview(b"")  # type: ignore[arg-type]


def encode(
    msg_type: str,
    fields: Mapping[str, Any] | None = None,
    parts: Mapping[str, PartValue] | Iterable[tuple[str, PartValue]] | None = None,
    *,
    version: tuple[int, int] = PROTOCOL_VERSION,
) -> list[Buffer]:
    """Build the frames of one message. Arrays go out as zero-copy memoryviews."""
    header: dict[str, Any] = {"v": list(version), "type": msg_type}
    if fields:
        for key, value in fields.items():
            if key in ("v", "type", "parts"):
                raise ValueError(f"{key!r} is reserved in message headers")
            header[key] = value
    descriptors: list[dict[str, Any]] = []
    frames: list[Buffer] = []
    items = parts.items() if isinstance(parts, Mapping) else (parts or ())
    for name, value in items:
        if isinstance(value, np.ndarray):
            wire = _wire_dtype(value)
            descriptors.append({"name": name, "kind": "array", "dtype": wire, "shape": list(value.shape)})
            frames.append(_array_buffer(value, wire))
        else:
            descriptors.append({"name": name, "kind": "bytes"})
            frames.append(value if isinstance(value, memoryview) else memoryview(value))
    if descriptors:
        header["parts"] = descriptors
    return [msgpack.packb(header, use_bin_type=True)] + frames


def unpack_header(data: Buffer, limits: Limits) -> dict[str, Any]:
    """Decode a header frame with hard size limits; any failure is a ProtocolError."""
    if len(data) > limits.max_header_bytes:
        raise ProtocolError(
            f"the header frame is {len(data)} bytes; the limit is {limits.max_header_bytes}", code="too_large"
        )
    try:
        header = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=limits.max_header_bytes,
            max_bin_len=limits.max_header_bytes,
            max_array_len=4096,
            max_map_len=1024,
            max_ext_len=0,  # no extension types (they are how unsafe object hooks creep in)
        )
    except Exception as exc:  # msgpack raises ValueError, StackError, ExtraData, UnicodeDecodeError, ...
        raise ProtocolError(f"the header frame is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("the header frame must be a msgpack map")
    return header


def check_version(header: Mapping[str, Any]) -> tuple[int, int]:
    version = header.get("v")
    if (
        not isinstance(version, list)
        or len(version) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in version)
    ):
        raise ProtocolError("the header has no protocol version 'v': [major, minor]")
    major, minor = version
    if major != PROTOCOL_VERSION[0]:
        raise ProtocolError(
            f"protocol version {major}.{minor} is not supported; this end speaks "
            f"{PROTOCOL_VERSION[0]}.x (update the add-on or the server so both match)",
            code="version_mismatch",
        )
    return int(major), int(minor)


def _decode_part(desc: Any, frame: Buffer, index: int) -> tuple[str, PartValue]:
    if not isinstance(desc, dict):
        raise ProtocolError(f"part {index} has no descriptor map")
    name = desc.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_PARTS_NAME:
        raise ProtocolError(f"part {index} needs a name of 1-{MAX_PARTS_NAME} characters")
    kind = desc.get("kind")
    if kind == "bytes":
        return name, frame
    if kind != "array":
        raise ProtocolError(f"part {name!r} has unknown kind {kind!r}")
    wire = desc.get("dtype")
    if wire not in DTYPES:
        raise ProtocolError(f"part {name!r} has dtype {wire!r}; allowed: {', '.join(DTYPES)}")
    shape = desc.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)
    ):
        raise ProtocolError(f"part {name!r} has an invalid shape")
    dtype = DTYPES[wire]
    expected = math.prod(shape) * dtype.itemsize
    if expected != len(frame):
        raise ProtocolError(
            f"part {name!r} declares {expected} bytes ({wire} {shape}) but its frame has {len(frame)}"
        )
    # Zero-copy view over the received frame (read-only, which is what receivers want).
    return name, np.frombuffer(frame, dtype=dtype).reshape(shape)


def _job_id_hint(header_frame: Buffer, limits: Limits) -> str | None:
    """The job id in a refused message's header, if it has a valid one.

    A size refusal names the job, so the client that sent it (even one that does not check
    limits itself) sees its job fail instead of waiting for an answer that never comes. The
    header is bounded by ``max_header_bytes``, so reading it costs nothing whatever the frames hold.
    """
    try:
        job_id = unpack_header(header_frame, limits).get("job_id")
    except ProtocolError:
        return None
    return job_id if valid_job_id(job_id) else None


def decode(frames: Sequence[Buffer], limits: Limits | None = None, *, check_schema: bool = True) -> Message:
    """Decode and validate one message's frames (header first). Raises ProtocolError only."""
    limits = limits or Limits()
    if not frames:
        raise ProtocolError("empty message")
    if len(frames) > limits.max_frames:
        raise ProtocolError(f"the message has {len(frames)} frames; the limit is {limits.max_frames}",
                            code="too_large", job_id=_job_id_hint(frames[0], limits))
    total = 0
    for i, frame in enumerate(frames):
        size = len(frame)
        total += size
        if i and size > limits.max_frame_bytes:
            raise ProtocolError(f"frame {i} is {size} bytes; the limit is {limits.max_frame_bytes} per frame",
                                code="too_large", job_id=_job_id_hint(frames[0], limits))
    if total > limits.max_total_bytes:
        raise ProtocolError(f"the message is {total} bytes; the limit is {limits.max_total_bytes}",
                            code="too_large", job_id=_job_id_hint(frames[0], limits))
    header = unpack_header(frames[0], limits)
    version = check_version(header)
    msg_type = header.pop("type", None)
    header.pop("v", None)
    if not isinstance(msg_type, str):
        raise ProtocolError("the header has no message 'type'")
    descriptors = header.pop("parts", [])
    if not isinstance(descriptors, list):
        raise ProtocolError("'parts' must be a list")
    if len(descriptors) != len(frames) - 1:
        raise ProtocolError(f"the header describes {len(descriptors)} parts but {len(frames) - 1} frames follow")
    job_id = header.get("job_id") if isinstance(header.get("job_id"), str) else None
    if check_schema:
        complaint = check_fields(msg_type, header)
        if complaint is not None:
            code = "unknown_type" if complaint.startswith("unknown message type") else "bad_message"
            raise ProtocolError(complaint, code=code, job_id=job_id)
    parts: dict[str, PartValue] = {}
    for i, desc in enumerate(descriptors):
        try:
            name, value = _decode_part(desc, frames[i + 1], i)
        except ProtocolError as exc:
            exc.job_id = job_id
            raise
        if name in parts:
            raise ProtocolError(f"part name {name!r} appears twice", job_id=job_id)
        parts[name] = value
    return Message(type=msg_type, fields=header, parts=parts, version=version)


def encode_message(msg: WireMessage, *, version: tuple[int, int] = PROTOCOL_VERSION) -> list[Buffer]:
    """The frames of a typed message (arrays as zero-copy views)."""
    return encode(msg.TYPE, msg.header(), msg.wire_parts(), version=version)


def check_parts(specs: tuple[PartSpec, ...], msg: Message) -> None:
    """Every part must match a row its class declares: name, kind, dtype and columns."""
    job_id = msg.fields.get("job_id") if isinstance(msg.fields.get("job_id"), str) else None
    for name, value in msg.parts.items():
        spec = find_spec(specs, name)
        if spec is None:
            raise ProtocolError(f"unexpected part in {msg.type}: {name}", job_id=job_id)
        if spec.kind == "bytes":
            if isinstance(value, np.ndarray):
                raise ProtocolError(f"{name} must be sent as {spec.describe()}, not an array", spec.code, job_id)
            continue
        if not isinstance(value, np.ndarray):
            raise ProtocolError(f"{name} must be an array of {spec.describe()}", spec.code, job_id)
        shape_ok = value.ndim == 2 and value.shape[1] == spec.columns if spec.columns else True
        if value.dtype != DTYPES[spec.dtype] or not shape_ok:
            shape = tuple(value.shape)
            raise ProtocolError(f"{name} must be {spec.describe()}, got {value.dtype} {shape}", spec.code, job_id)


def typed(msg: Message, registry: Mapping[str, type[WireMessage]] = MESSAGES) -> WireMessage:
    """A decoded frame set as its message class (header fields and parts checked against the class).

    ``registry``: type name -> class; the wire's by default (the server's engine pipe has its own).
    Raises ProtocolError only.
    """
    cls = registry.get(msg.type)
    if cls is None:
        raise ProtocolError(f"unknown message type {msg.type!r}", code="unknown_type")
    job_id = msg.fields.get("job_id") if isinstance(msg.fields.get("job_id"), str) else None
    complaint = check_header(cls, msg.fields)
    if complaint is not None:
        raise ProtocolError(complaint, job_id=job_id)
    check_parts(cls.PARTS, msg)
    return cls.from_wire(msg.fields, msg.parts)


def decode_message(frames: Sequence[Buffer], limits: Limits | None = None) -> WireMessage:
    """Decode and validate one message's frames into its typed class. Raises ProtocolError only."""
    return typed(decode(frames, limits))


__all__ = [
    "DTYPES", "Message", "ProtocolError", "PartValue", "check_parts", "check_version", "decode", "decode_message",
    "encode", "encode_message", "typed", "unpack_header",
]

"""The typed message base: a dataclass per wire message, its header fields and binary parts declared on it.

A message class (see :mod:`.messages`) is a dataclass whose fields are the
header's fields; their annotations are the wire types (checked on receipt),
a field without a default is required, and an optional field left ``None`` is
not sent (unless it is listed in ``NULLABLE``: then ``nil`` is sent and accepted).
Binary parts are declared once, on the class, as :class:`PartSpec` rows
(``PARTS``): name pattern, kind, dtype, columns, and the error code a sender
gets when a part breaks its row. Dataclass fields marked with :func:`part_field`
hold part values (images, mesh arrays) and never go into the header; a class
with parts maps them in :meth:`WireMessage.wire_parts` / :meth:`WireMessage.from_wire`.

:mod:`.codec` turns an instance into frames and frames into an instance;
nothing else builds or parses headers. Pure Python plus numpy.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, Mapping, TypeVar, Union

import numpy as np

from .errors import Step1X3DError

Buffer = Union[bytes, bytearray, memoryview]
PartValue = Union[np.ndarray, bytes, bytearray, memoryview]

class ProtocolError(Step1X3DError):
    """A message that breaks the protocol (``code`` from ERROR_CODES: bad_message, too_large, ...).

    A subclass because receivers catch this family alone: it is answered with an ``error``
    (or, for a submit whose header names its job, a ``rejected``) instead of stopping anything.
    """

    def __init__(self, message: str, code: str = "bad_message", job_id: str | None = None) -> None:
        super().__init__(message, code, job_id=job_id)


_PART = "wire_part"  # dataclass field metadata key: this attribute holds parts, not a header field


def part_field(default_factory: Any = None) -> Any:
    """A dataclass field that carries binary parts (not a header field)."""
    meta = {_PART: True}
    if default_factory is None:
        return dataclasses.field(default=None, metadata=meta)
    return dataclasses.field(default_factory=default_factory, metadata=meta)


@dataclass(frozen=True)
class PartSpec:
    """One kind of binary part of a message: ``pattern`` ("image{i}", "mesh.positions", "lod{i}.faces").

    ``kind`` "bytes" (opaque files) or "array"; arrays have a wire ``dtype`` and are
    ``(N, columns)`` (``columns`` 0: any shape). ``code`` is the error a part that
    breaks this row gets (``bad_image`` for images, ``bad_mesh`` for client meshes).
    """

    pattern: str
    kind: str = "bytes"
    dtype: str = ""
    columns: int = 0
    code: str = "bad_message"

    @property
    def regex(self) -> re.Pattern[str]:
        return _compile(self.pattern)

    def name(self, i: int | None = None) -> str:
        return self.pattern.replace("{i}", str(i)) if i is not None else self.pattern

    def describe(self) -> str:
        if self.kind == "bytes":
            return "encoded bytes"
        return f"{self.dtype} (N, {self.columns})" if self.columns else self.dtype


@cache
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern).replace(re.escape("{i}"), r"(?:0|[1-9][0-9]{0,2})") + r"\Z")


def find_spec(specs: tuple[PartSpec, ...], name: str) -> PartSpec | None:
    for spec in specs:
        if spec.regex.match(name):
            return spec
    return None


@dataclass(frozen=True)
class FieldSpec:
    """A header field as the receiver checks it: accepted Python types, required, nil allowed."""

    name: str
    types: tuple[type, ...]
    required: bool
    nullable: bool
    kind: str  # "str", "int", "float", "bool", "map", "list", "tuple"


M = TypeVar("M", bound="WireMessage")


class WireMessage:
    """Base of every message class (each also a ``@dataclass``)."""

    TYPE: ClassVar[str] = ""
    PARTS: ClassVar[tuple[PartSpec, ...]] = ()
    NULLABLE: ClassVar[frozenset[str]] = frozenset()  # optional fields sent (and accepted) as nil

    def header(self) -> dict[str, Any]:
        """The header fields as sent (``v``, ``type`` and ``parts`` are added by the codec)."""
        out: dict[str, Any] = {}
        for spec in field_specs(type(self)):
            value = getattr(self, spec.name)
            if value is None and not spec.nullable:
                continue  # an optional field not set is not sent
            out[spec.name] = list(value) if isinstance(value, tuple) else value
        return out

    def wire_parts(self) -> list[tuple[str, PartValue]]:
        """The binary parts in wire order (classes with parts override this)."""
        return []

    @classmethod
    def from_wire(cls: type[M], fields: Mapping[str, Any], parts: Mapping[str, PartValue]) -> M:
        """Build from checked header fields (and parts, for classes that have them)."""
        return cls(**header_values(cls, fields))


def header_values(cls: type[WireMessage], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments of ``cls``'s header fields, coerced to their declared types."""
    values: dict[str, Any] = {}
    for spec in field_specs(cls):
        if spec.name not in fields:
            continue
        value = fields[spec.name]
        if value is not None and spec.kind == "float":
            value = float(value)
        elif value is not None and spec.kind == "tuple":
            value = tuple(value)
        values[spec.name] = value
    return values


_KINDS: dict[Any, tuple[str, tuple[type, ...]]] = {
    str: ("str", (str,)),
    int: ("int", (int,)),
    float: ("float", (int, float)),
    bool: ("bool", (bool,)),
    dict: ("map", (dict,)),
    list: ("list", (list,)),
    tuple: ("tuple", (list,)),  # msgpack has no tuples: a list on the wire, a tuple in Python
}


_FIELD_SPECS: dict[type, tuple[FieldSpec, ...]] = {}


def field_specs(cls: type[WireMessage]) -> tuple[FieldSpec, ...]:
    """The header fields of a message class, read from its dataclass fields and annotations (once per class)."""
    cached = _FIELD_SPECS.get(cls)
    if cached is None:
        cached = _FIELD_SPECS[cls] = _read_field_specs(cls)
    return cached


def _read_field_specs(cls: type[WireMessage]) -> tuple[FieldSpec, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.metadata.get(_PART):
            continue
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is Union else ()
        if args:
            base = next(a for a in args if a is not type(None))
        else:
            base = hint
        kind, accepted = _KINDS[typing.get_origin(base) or base]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        nullable = f.name in cls.NULLABLE
        out.append(FieldSpec(f.name, accepted + ((type(None),) if nullable else ()), required, nullable, kind))
    return tuple(out)


def check_header(cls: type[WireMessage], fields: Mapping[str, Any]) -> str | None:
    """One-line complaint about ``fields`` for ``cls``, or None. Unknown extra fields are allowed (newer minors)."""
    for spec in field_specs(cls):
        if spec.name not in fields:
            if spec.required:
                return f"{cls.TYPE} needs the field {spec.name!r}"
            continue
        value = fields[spec.name]
        # bool is an int subclass: do not let True pass as a number (or a number as a bool).
        if (isinstance(value, bool) and bool not in spec.types) or not isinstance(value, spec.types):
            return f"{cls.TYPE}.{spec.name} has the wrong type"
    return None


__all__ = [
    "Buffer", "FieldSpec", "ProtocolError", "PartSpec", "PartValue", "WireMessage", "check_header", "field_specs", "find_spec",
    "header_values", "part_field",
]

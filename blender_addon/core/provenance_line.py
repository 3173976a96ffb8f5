"""The panel's one line about the active result: what was inferred rather than seen, by which backend.

Reads the object's custom properties as the importer wrote them (one per provenance key,
``protocol.provenance.property_name``). Pure Python, no bpy: the panel passes a plain map.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..protocol.provenance import AI_GENERATED, BACKEND, INFERRED, SEED, property_name

# How the panel names a backend; others show under their own name.
BACKEND_LABELS = {"inflate": "weight-free", "step1x3d": "Step1X-3D"}


def _as_list(value: Any) -> list[str]:
    """A list-valued property: the importer stores lists as JSON text; bpy may also hand back a sequence."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value] if value else []
        if isinstance(value, str):
            return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    try:
        return [str(v) for v in list(value)]
    except TypeError:
        return [str(value)]


def is_result(props: Mapping[str, Any]) -> bool:
    """Whether these custom properties are those of an object the add-on imported."""
    return bool(props.get(property_name(AI_GENERATED))) or property_name(BACKEND) in props


def provenance_line(props: Mapping[str, Any]) -> str:
    """E.g. "Inferred, not seen: back, depth (weight-free, seed 3)"; "" for an object that is not ours."""
    if not is_result(props):
        return ""
    backend = str(props.get(property_name(BACKEND), "") or "")
    about = [BACKEND_LABELS.get(backend, backend)] if backend else []
    seed = props.get(property_name(SEED))
    if isinstance(seed, int) and not isinstance(seed, bool):
        about.append(f"seed {seed}")
    suffix = f" ({', '.join(about)})" if about else ""
    key = property_name(INFERRED)  # the weight-free backend's list; other backends do not write it
    if key not in props:  # a backend that does not report its guesses: say only what is certain
        return f"AI-generated{suffix}"
    inferred = sorted(set(_as_list(props[key])))
    if not inferred:
        return f"Nothing inferred: every side was seen{suffix}"
    return f"Inferred, not seen: {', '.join(inferred)}{suffix}"


__all__ = ["BACKEND_LABELS", "is_result", "provenance_line"]

"""Names for what the add-on creates: objects, collections, images, job ids."""

from __future__ import annotations

import re
import uuid
from pathlib import PurePath

# Blender ID names are at most 63 bytes; leave room for ".001"-style suffixes and "_base_color".
_MAX_BASE = 40
_UNSAFE = re.compile(r"[\x00-\x1f\\/:*?\"<>|]+")

TEXTURE_SUFFIXES = {"base_color": "base_color", "orm": "orm", "normal": "normal"}


def asset_name(image_name: str, fallback: str = "Step1X3D") -> str:
    """The object's name: the first reference image's file stem ("chair_front.png" -> "chair_front")."""
    stem = PurePath(image_name.replace("\\", "/")).name if image_name else ""
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    stem = _UNSAFE.sub("_", stem).strip(" ._")
    if not stem:
        stem = fallback
    return _truncate_utf8(stem, _MAX_BASE)


def texture_name(asset: str, kind: str) -> str:
    """Packed image name, e.g. "chair_base_color", so the artist can tell the maps apart."""
    return f"{asset}_{TEXTURE_SUFFIXES.get(kind, kind)}"


def new_job_id() -> str:
    """Job ids are chosen by the client so that a reconnecting client can re-attach to its job."""
    return uuid.uuid4().hex


def _truncate_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")[:limit]
    return data.decode("utf-8", errors="ignore")

"""Reference images -> encoded bytes for the server: files, or images already in the .blend."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import bpy
import numpy as np

from ..core.png import encode_png, float_pixels_to_rgba8
from ..core.views import VIEW_ORDER, ordered
from ..protocol.errors import Step1X3DError

ALLOWED_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
_FILE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}


class InputError(Step1X3DError):
    """A reference image or the selection is unusable; the message is one sentence for the artist.

    A thin subclass because the operators and the API catch this family (nothing was sent yet).
    """

    default_code = "bad_input"


@dataclass
class References:
    images: list[bytes] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # first is the front view; names the asset
    views: list[str] = field(default_factory=list)  # "front", "right", ... in the order sent


def from_file(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    p = Path(bpy.path.abspath(str(path)))
    if p.suffix.lower() not in ALLOWED_SUFFIXES:
        raise InputError(f"'{p.name}' is not a PNG, JPEG or WebP image.")
    try:
        data = p.read_bytes()
    except OSError:
        raise InputError(f"Cannot read the reference image '{p}'.") from None
    if not data:
        raise InputError(f"The reference image '{p.name}' is empty.")
    return data, p.name


def from_blend_image(image: bpy.types.Image) -> tuple[bytes, str]:
    """Packed or on-disk original bytes when unchanged; otherwise the current pixels as PNG."""
    name = image.name
    if not Path(name).suffix:
        name += ".png"
    if not image.is_dirty:
        if image.packed_file is not None and image.file_format in _FILE_FORMATS:
            return bytes(image.packed_file.data), name
        if image.source == "FILE" and image.file_format in _FILE_FORMATS:
            path = Path(bpy.path.abspath(image.filepath_raw or image.filepath))
            if path.is_file():
                return path.read_bytes(), name
    size: Any = image.size  # bpy_prop_array: indexable at run time, not in the stubs
    width, height = int(size[0]), int(size[1])
    channels = image.channels
    if width * height == 0:
        raise InputError(f"The image '{image.name}' has no pixels (is its file missing?).")
    pixels = np.empty(width * height * channels, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    return encode_png(float_pixels_to_rgba8(pixels, width, height, channels)), name


def gather(sources: Iterable[Any]) -> References:
    """Accept paths, ``bpy.types.Image`` objects or image names (``"IM:<name>"`` not needed: names are tried last)."""
    refs = References()
    for src in sources:
        if isinstance(src, bpy.types.Image):
            data, name = from_blend_image(src)
        elif isinstance(src, (str, os.PathLike)) and Path(bpy.path.abspath(str(src))).is_file():
            data, name = from_file(src)
        elif isinstance(src, str) and src in bpy.data.images:
            data, name = from_blend_image(bpy.data.images[src])
        else:
            raise InputError(f"The reference image '{src}' is neither a file nor an image in this .blend.")
        refs.images.append(data)
        refs.names.append(name)
        index = len(refs.views)
        refs.views.append(VIEW_ORDER[index] if index < len(VIEW_ORDER) else f"view {index + 1}")
    if not refs.images:
        raise InputError("Add at least one reference image (the first one is the front view).")
    return refs


def gather_views(slots: Mapping[str, Any]) -> References:
    """Named views (``{"front": path, "back": image, ...}``), sent in the server's order."""
    try:
        filled = ordered({view: src for view, src in slots.items() if src not in (None, "")})
    except Step1X3DError as exc:  # the views module's one sentence, as the operators expect it
        raise InputError(str(exc), exc.code) from None
    refs = gather(src for _, src in filled)
    refs.views = [view for view, _ in filled]  # a skipped slot (front + back) keeps each image's view
    return refs


def slot_filled(slot: Any) -> bool:
    """Whether a panel slot names something (an image name that is gone still counts: it fails at send)."""
    return bool(slot.image_name if slot.source == "IMAGE" else slot.filepath)


def slot_source(slot: Any) -> Any:
    """One panel slot (``STEP1X3D_PG_reference``) as a path or an image; None when empty."""
    if slot.source == "IMAGE":
        if not slot.image_name:
            return None
        image = bpy.data.images.get(slot.image_name)
        if image is None:
            raise InputError(f"The image '{slot.image_name}' is no longer in this .blend.")
        return image
    return slot.filepath or None


def gather_panel(state: Any) -> References:
    """The panel's four view slots, resolved now (images by name: ID pointers do not survive undo)."""
    return gather_views({view: slot_source(getattr(state, view)) for view in VIEW_ORDER})

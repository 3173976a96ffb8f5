"""Thumbnails for the panel: reference slots and the history gallery (Blender preview collections).

One preview collection for the add-on, created on first use and removed in
``unregister()``. Files are keyed by path and modification time, so a file
replaced on disk gets a fresh thumbnail; images of the .blend use their own
``Image.preview``.
"""

from __future__ import annotations

import os
from typing import Any

import bpy

_collection: Any = None  # bpy.utils.previews.ImagePreviewCollection (untyped in the stubs)


def _previews() -> Any:
    global _collection
    if _collection is None:
        import bpy.utils.previews

        _collection = bpy.utils.previews.new()
    return _collection


def file_key(path: str) -> str | None:
    """The collection key of a file's thumbnail; None when the file is not there."""
    full = bpy.path.abspath(path)
    try:
        stat = os.stat(full)
    except OSError:
        return None
    return f"{full}|{stat.st_mtime_ns}|{stat.st_size}"


def file_preview(path: str) -> Any:
    """The thumbnail (``ImagePreview``) of the image file ``path``, loaded once; None when there is no file."""
    key = file_key(path) if path else None
    if key is None:
        return None
    previews = _previews()
    preview = previews.get(key)
    if preview is None:
        preview = previews.load(key, bpy.path.abspath(path), "IMAGE")
    return preview


def file_icon(path: str) -> int:
    """Icon id of the file's thumbnail (0 when there is none; also 0 in background mode: no GPU icons)."""
    preview = file_preview(path)
    return int(preview.icon_id) if preview is not None else 0


def image_icon(image: bpy.types.Image | None) -> int:
    """Icon id of an image in the .blend (Blender renders its preview lazily)."""
    if image is None:
        return 0
    preview: Any = image.preview_ensure()
    return int(preview.icon_id) if preview is not None else 0


def slot_icon(slot: Any) -> int:
    """Icon id for a panel slot (``STEP1X3D_PG_reference``)."""
    if slot.source == "IMAGE":
        return image_icon(bpy.data.images.get(slot.image_name) if slot.image_name else None)
    return file_icon(slot.filepath)


def clear() -> None:
    """unregister(): free every thumbnail."""
    global _collection
    if _collection is not None:
        import bpy.utils.previews

        bpy.utils.previews.remove(_collection)
        _collection = None

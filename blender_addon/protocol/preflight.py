"""Client-side preflight: refuse a submit the server would refuse for its size, before sending it.

The server checks every limit again (a client may be old, buggy or hostile),
but only once the whole message has arrived, and a frame above its transport
cap (``MAXMSGSIZE``) is not refused at all: ZeroMQ drops the connection and
the job is never heard of. So clients check the limits from the server's last
``welcome`` (the defaults before one arrived) and raise :class:`SubmitRefused`
with one sentence that names the image or mesh array, its size, the limit and
what to do, and the code the server would answer (``too_large``).

Only the limits of one message are checked here: bytes per image and per mesh
array, images per job, mesh vertices and triangles, frames, header and total
bytes. Pixel counts are not: the server reads them from the image headers as
soon as the submit arrives and names the image in its ``bad_image`` refusal,
and a file within the byte limits costs little to send. Nor is the queue's
byte budget (``max_queue_bytes``, at least ``max_total_bytes`` by default):
it is the server's capacity, answered at once with ``busy`` or ``too_large``.
Pure Python plus numpy-like arrays (``.size``/``.nbytes``): no bpy, no zmq.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import Step1X3DError
from .limits import Limits, MiB
from .result import CLIENT_MESH_ARRAYS

KiB = 1024
_ARRAY_WORDS = {
    "positions": "vertex positions",
    "faces": "triangles",
    "uvs": "UVs",
    "normals": "normals",
}


class SubmitRefused(Step1X3DError):
    """A job this client does not send because it breaks a limit of the server.

    ``str(exc)`` is one sentence for the artist; ``code`` is what the server
    would have answered (``too_large``); ``job_id`` is set by the sender. A subclass
    because the session catches this family alone (it ends the job as the server would).
    """

    def __init__(self, message: str, code: str = "too_large", job_id: str | None = None) -> None:
        super().__init__(message, code, job_id=job_id)


def describe_size(n: int) -> str:
    """Bytes as an artist reads them: "80 MB", "1.5 MB", "900 KB" (binary units, as file managers show)."""
    if n >= MiB:
        value, unit = n / MiB, "MB"
    elif n >= KiB:
        value, unit = n / KiB, "KB"
    else:
        return f"{n:,} bytes"
    text = f"{value:.0f}" if value >= 10 else f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{text} {unit}"


def _sizes(value: int, limit: int) -> tuple[str, str]:
    """``value`` and ``limit`` in words; exact byte counts where rounding would make them read alike."""
    a, b = describe_size(value), describe_size(limit)
    return (a, b) if a != b else (f"{value:,} bytes", f"{limit:,} bytes")


def _nbytes(data: Any) -> int:
    return int(data.nbytes) if hasattr(data, "nbytes") else memoryview(data).nbytes


def _image_name(names: Sequence[str] | None, index: int, count: int) -> str:
    if names is not None and len(names) == count and isinstance(names[index], str) and names[index]:
        return names[index]
    return "the front image" if index == 0 else f"reference image {index + 1}"


def check_submit(
    limits: Limits,
    images: Sequence[Any],
    *,
    image_names: Sequence[str] | None = None,
    mesh: Mapping[str, Any] | None = None,
    header_bytes: int = 0,
) -> None:
    """Raise :class:`SubmitRefused` (one sentence) if the server would refuse this submit for its size.

    ``images``: the encoded files (bytes-like), front view first; ``mesh``: the
    wire arrays of a texture-only job (``positions`` (N, 3) float32, ``faces``
    (M, 3) uint32, optional ``uvs``, ``normals``), ``None`` entries ignored;
    ``header_bytes``: the encoded header frame's size, when known. The first
    problem found is reported, most actionable first: counts, then one file or
    array too large, then the message as a whole.
    """
    image_sizes = [_nbytes(data) for data in images]
    arrays = {key: mesh[key] for key in CLIENT_MESH_ARRAYS if mesh is not None and mesh.get(key) is not None}
    count = len(image_sizes)

    if count > limits.max_images:
        raise SubmitRefused(
            f"The job has {count} reference images; this server accepts up to {limits.max_images} per job: "
            "use fewer views."
        )
    if "positions" in arrays:
        vertices = int(arrays["positions"].size) // 3
        if vertices > limits.max_mesh_vertices:
            seams = " (counted after splitting at UV seams)" if "uvs" in arrays else ""
            raise SubmitRefused(
                f"The mesh has {vertices:,} vertices{seams}; this server accepts up to "
                f"{limits.max_mesh_vertices:,}: decimate it (or split it into parts) and try again."
            )
    if "faces" in arrays:
        triangles = int(arrays["faces"].size) // 3
        if triangles > limits.max_mesh_faces:
            raise SubmitRefused(
                f"The mesh has {triangles:,} triangles; this server accepts up to {limits.max_mesh_faces:,}: "
                "decimate it (or split it into parts) and try again."
            )
    for index, size in enumerate(image_sizes):
        if size > limits.max_frame_bytes:
            name = _image_name(image_names, index, count)
            have, limit = _sizes(size, limits.max_frame_bytes)
            raise SubmitRefused(
                f"{name} is {have}; this server accepts images up to {limit} per file: "
                "save it as JPEG (or 8-bit PNG) or scale it down."
            )
    array_sizes = {key: _nbytes(value) for key, value in arrays.items()}
    for key, size in array_sizes.items():
        if size > limits.max_frame_bytes:
            have, limit = _sizes(size, limits.max_frame_bytes)
            raise SubmitRefused(
                f"The mesh's {_ARRAY_WORDS[key]} take {have}; this server accepts up to {limit} per array: "
                "decimate the mesh and try again."
            )
    frames = 1 + count + len(arrays)
    if frames > limits.max_frames:
        raise SubmitRefused(
            f"The job has {count} images and {len(arrays)} mesh arrays; this server accepts up to "
            f"{limits.max_frames - 1} such parts per job: use fewer views."
        )
    if header_bytes > limits.max_header_bytes:
        have, limit = _sizes(header_bytes, limits.max_header_bytes)
        raise SubmitRefused(
            f"The job's description (settings and image names) takes {have}; this server accepts up to "
            f"{limit}: use shorter image names."
        )
    images_total, mesh_total = sum(image_sizes), sum(array_sizes.values())
    total = header_bytes + images_total + mesh_total
    if total > limits.max_total_bytes:
        have, limit = _sizes(total, limits.max_total_bytes)
        breakdown = f"images {describe_size(images_total)}" + (f", mesh {describe_size(mesh_total)}" if arrays else "")
        advice = "use fewer or smaller images (JPEG)" + (", or decimate the mesh" if arrays else "")
        raise SubmitRefused(
            f"The job is {have} in total ({breakdown}); this server accepts up to {limit} per job: {advice}."
        )


__all__ = ["SubmitRefused", "check_submit", "describe_size"]

"""Turn a decoded ``submit`` message into a validated, still encoded QueuedRequest, or one clear refusal.

Everything here treats the client as untrusted: settings go through
JobSettings' range checks, a texture-only mesh through shape, dtype, index and
finiteness checks, and images through checks that read only their headers
(format, declared size, JPEG scan count, PNG chunk structure). This runs on the
server's event loop, so it never decodes pixels: a queued job keeps its images
as the bytes the client sent, and the worker decodes them when the job starts
(:meth:`QueuedRequest.decode`); a file that passes the header checks but does
not decode fails its job with ``bad_image``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from blender_addon.protocol.codec import Message, PartValue
from blender_addon.protocol.limits import Limits
from blender_addon.protocol.settings import JobSettings, SettingsError

from ..assets import MeshData
from ..imaging.decode import Encoded, ImageError, check_encoded_image, decode_image
from ..pipeline.base import JobRequest

MESH_PARTS = {"mesh.positions", "mesh.faces", "mesh.uvs", "mesh.normals"}


class Refusal(Exception):
    """A submit the server will not run: becomes a ``rejected`` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class QueuedRequest:
    """A validated job as it waits in the queue: images still encoded, as the client sent them.

    On the server the images are zero-copy views of the received ZeroMQ frames;
    they travel to the worker as raw byte strings next to a pickled copy of this
    record without them (see ``WorkerHandle.run``).
    """

    images: list[Encoded]  # PNG/JPEG/WebP files, front view first; header-checked, not decoded
    settings: JobSettings = field(default_factory=JobSettings)
    mesh: MeshData | None = None
    image_names: list[str] = field(default_factory=list)
    max_pixels: int = Limits().max_image_pixels
    fields: dict[str, Any] = field(default_factory=dict)  # the submit's header fields, for fingerprint()

    @property
    def nbytes(self) -> int:
        """What this request holds in memory while it waits (the queue's byte budget counts this)."""
        total = sum(len(memoryview(image).cast("B")) for image in self.images)
        if self.mesh is not None:
            for arr in (self.mesh.positions, self.mesh.faces, self.mesh.uvs, self.mesh.normals):
                total += arr.nbytes if arr is not None else 0
        return total

    def fingerprint(self) -> str:
        """The submit's fingerprint(), from what the queue kept (the mesh is a copy with the same bytes).

        Computed when first needed rather than on arrival: hashing runs at about 1 GB/s, and the
        event loop must read a flood of large submits faster than that.
        """
        parts: dict[str, PartValue] = {f"image{i}": image for i, image in enumerate(self.images)}
        if self.mesh is not None:
            for attr in ("positions", "faces", "uvs", "normals"):
                value = getattr(self.mesh, attr)
                if value is not None:
                    parts[f"mesh.{attr}"] = value
        return fingerprint(self.fields, parts)

    def without_images(self) -> QueuedRequest:
        return replace(self, images=[])

    def decode(self) -> JobRequest:
        """Decode the images: the worker's first step of a job (never run on the server's event loop).

        Raises ImageError (a PipelineError with code ``bad_image``) naming the image that failed.
        """
        names = self.image_names or [f"image {i + 1}" for i in range(len(self.images))]
        decoded = [
            decode_image(data, max_pixels=self.max_pixels, name=name) for data, name in zip(self.images, names)
        ]
        return JobRequest(images=decoded, settings=self.settings, mesh=self.mesh, image_names=list(names))


def submit_bytes(msg: Message) -> int:
    """Bytes of a submit's parts: about what the queue holds for it if accepted."""
    return sum(value.nbytes if isinstance(value, np.ndarray) else len(memoryview(value).cast("B"))
               for value in msg.parts.values())


def fingerprint(fields: Mapping[str, Any], parts: Mapping[str, PartValue]) -> str:
    """Digest of what a submit asks for, so a resubmitted id can be told apart from a different job.

    Parts are hashed in name order, each with its length, so a queued job's digest can be
    computed later from its QueuedRequest (see there) and equal the submit's.
    """
    digest = hashlib.blake2b(digest_size=32)  # about 1 GB/s; not a security boundary
    digest.update(repr(sorted((k, repr(v)) for k, v in fields.items())).encode())
    for name in sorted(parts):
        value = parts[name]
        if isinstance(value, np.ndarray):
            data = memoryview(np.ascontiguousarray(value)).cast("B")  # type: ignore[arg-type]
        else:
            data = memoryview(value).cast("B")
        digest.update(f"{name}:{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()


def _image_names(msg: Message, count: int) -> list[str]:
    names = msg.fields.get("image_names")
    if isinstance(names, list) and len(names) == count and all(isinstance(n, str) and 0 < len(n) <= 200 for n in names):
        return list(names)
    return [f"image {i + 1}" for i in range(count)]


def _mesh(parts: dict[str, PartValue], limits: Limits) -> MeshData:
    positions, faces = parts.get("mesh.positions"), parts.get("mesh.faces")
    if not isinstance(positions, np.ndarray) or not isinstance(faces, np.ndarray):
        raise Refusal("bad_mesh", "the mesh needs float32 'positions' (N, 3) and uint32 'faces' (M, 3) arrays")
    if positions.ndim != 2 or positions.shape[1] != 3 or positions.dtype != np.float32:
        raise Refusal("bad_mesh", f"mesh positions must be float32 (N, 3), got {positions.dtype} {positions.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype not in (np.uint32, np.int32):
        raise Refusal("bad_mesh", f"mesh faces must be uint32 (M, 3), got {faces.dtype} {faces.shape}")
    n, m = positions.shape[0], faces.shape[0]
    if n < 3 or m < 1:
        raise Refusal("bad_mesh", "the mesh is empty")
    if n > limits.max_mesh_vertices or m > limits.max_mesh_faces:
        raise Refusal(
            "too_large",
            f"the mesh has {n} vertices and {m} faces; the limits are "
            f"{limits.max_mesh_vertices} and {limits.max_mesh_faces}",
        )
    if not np.isfinite(positions).all():
        raise Refusal("bad_mesh", "the mesh has NaN or infinite vertex positions")
    faces_u = faces.astype(np.uint32) if faces.dtype == np.int32 else faces
    if faces.dtype == np.int32 and (faces < 0).any() or int(faces_u.max()) >= n:
        raise Refusal("bad_mesh", f"mesh faces refer to vertices outside 0..{n - 1}")
    extras: dict[str, np.ndarray | None] = {}
    for attr, width in (("uvs", 2), ("normals", 3)):
        value = parts.get(f"mesh.{attr}")
        if value is None:
            extras[attr] = None
            continue
        if not isinstance(value, np.ndarray) or value.shape != (n, width) or value.dtype != np.float32:
            raise Refusal("bad_mesh", f"mesh {attr} must be float32 ({n}, {width})")
        if not np.isfinite(value).all():
            raise Refusal("bad_mesh", f"mesh {attr} contain NaN or infinite values")
        extras[attr] = np.array(value)
    return MeshData(
        positions=np.array(positions), faces=np.array(faces_u), uvs=extras["uvs"], normals=extras["normals"]
    )


def build_request(msg: Message, limits: Limits, capabilities: dict[str, Any] | None) -> QueuedRequest:
    """Validate a submit from its headers; raises Refusal with a code from the protocol's error table."""
    try:
        settings = JobSettings.from_wire(msg.fields.get("settings"))
    except SettingsError as exc:
        raise Refusal("bad_settings", str(exc)) from None
    image_keys = [k for k in msg.parts if k.startswith("image")]
    unknown = sorted(set(msg.parts) - set(image_keys) - MESH_PARTS)
    if unknown:
        raise Refusal("bad_message", f"unexpected part(s) in submit: {', '.join(unknown)}")
    expected = [f"image{i}" for i in range(len(image_keys))]
    if image_keys != expected:
        raise Refusal("bad_message", "images must be parts named image0, image1, ... in order")
    if not image_keys:
        raise Refusal("bad_image", "the job has no reference image")
    if len(image_keys) > limits.max_images:
        raise Refusal("too_large", f"the job has {len(image_keys)} images; the limit is {limits.max_images}")
    has_mesh = any(k in MESH_PARTS for k in msg.parts)
    if settings.mode == "texture" and not has_mesh:
        raise Refusal("bad_settings", "mode 'texture' paints a mesh you send: the job has no mesh")
    if has_mesh and settings.mode != "texture":
        raise Refusal("bad_settings", f"a mesh is only used by mode 'texture', not {settings.mode!r}")
    modes = (capabilities or {}).get("modes")
    if isinstance(modes, (list, tuple)) and settings.mode not in modes:
        raise Refusal("unsupported", f"the server's backend cannot do mode {settings.mode!r} (it does {', '.join(modes)})")
    names = _image_names(msg, len(image_keys))
    images: list[Encoded] = []
    for key, name in zip(image_keys, names):
        value = msg.parts[key]
        if isinstance(value, np.ndarray):
            raise Refusal("bad_image", f"{name} must be sent as encoded bytes (PNG, JPEG or WebP), not an array")
        try:
            check_encoded_image(value, limits.max_image_pixels, name)
        except ImageError as exc:
            raise Refusal("bad_image", str(exc)) from None
        images.append(value)  # kept encoded (a view of the received frame): the worker decodes it
    mesh = _mesh(msg.parts, limits) if has_mesh else None
    return QueuedRequest(
        images=images,
        settings=settings,
        mesh=mesh,
        image_names=names,
        max_pixels=limits.max_image_pixels,
        fields=dict(msg.fields),
    )

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blender_addon.protocol.errors import Step1X3DError
from blender_addon.protocol.limits import Limits
from blender_addon.protocol.messages import Submit
from blender_addon.protocol.result import CLIENT_MESH_ARRAYS, MESH_ARRAYS
from blender_addon.protocol.schema import PartValue
from blender_addon.protocol.settings import JobSettings, SettingsError

from ..assets import MeshData
from ..imaging.decode import Encoded, ImageError, check_encoded_image, decode_image
from ..pipeline.base import JobRequest
from ..pipeline.options import declared_options



class Refusal(Step1X3DError):
    """A submit the server will not run: becomes a ``rejected`` message (a subclass: the server catches this family)."""


@dataclass
class QueuedRequest:
    """A validated job as it waits in the queue: images still encoded, as the client sent them.

    On the server the images are zero-copy views of the received ZeroMQ frames;
    they travel to the worker as the parts of a ``pipe.RunJob`` message (never pickled).
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
            for arr in (getattr(self.mesh, name) for name in CLIENT_MESH_ARRAYS):
                total += arr.nbytes if arr is not None else 0
        return total

    def fingerprint(self) -> str:
        """The submit's fingerprint(), from what the queue kept (the mesh is a copy with the same bytes).

        Computed when first needed rather than on arrival: hashing runs at about 1 GB/s, and the
        event loop must read a flood of large submits faster than that.
        """
        mesh = None if self.mesh is None else {a: getattr(self.mesh, a) for a in CLIENT_MESH_ARRAYS}
        return fingerprint(self.fields, dict(Submit(job_id="", images=list(self.images), mesh=mesh).wire_parts()))

    def decode(self) -> JobRequest:
        """Decode the images: the worker's first step of a job (never run on the server's event loop).

        Raises ImageError (a PipelineError with code ``bad_image``) naming the image that failed.
        """
        names = self.image_names or [f"image {i + 1}" for i in range(len(self.images))]
        decoded = [
            decode_image(data, max_pixels=self.max_pixels, name=name) for data, name in zip(self.images, names)
        ]
        return JobRequest(images=decoded, settings=self.settings, mesh=self.mesh, image_names=list(names))


def submit_bytes(msg: Submit) -> int:
    """Bytes of a submit's parts: about what the queue holds for it if accepted."""
    return sum(value.nbytes if isinstance(value, np.ndarray) else len(memoryview(value).cast("B"))
               for _, value in msg.wire_parts())


def submit_fingerprint(msg: Submit) -> str:
    """fingerprint() of a received submit (header fields as the class sends them, parts in wire order)."""
    return fingerprint(msg.header(), dict(msg.wire_parts()))


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


def _image_names(msg: Submit, count: int) -> list[str]:
    names = msg.image_names
    if isinstance(names, list) and len(names) == count and all(isinstance(n, str) and 0 < len(n) <= 200 for n in names):
        return list(names)
    return [f"image {i + 1}" for i in range(count)]


def _mesh(arrays: dict[str, np.ndarray], limits: Limits) -> MeshData:
    """Content checks of a client mesh (the codec checked each array's dtype and columns against ``Submit.PARTS``)."""
    positions, faces = arrays.get("positions"), arrays.get("faces")
    if positions is None or faces is None:
        raise Refusal("the mesh needs float32 'positions' (N, 3) and uint32 'faces' (M, 3) arrays", "bad_mesh")
    n, m = positions.shape[0], faces.shape[0]
    if n < 3 or m < 1:
        raise Refusal("the mesh is empty", "bad_mesh")
    if n > limits.max_mesh_vertices or m > limits.max_mesh_faces:
        raise Refusal(
            f"the mesh has {n} vertices and {m} faces; the limits are "
            f"{limits.max_mesh_vertices} and {limits.max_mesh_faces}",
            "too_large",
        )
    if not np.isfinite(positions).all():
        raise Refusal("the mesh has NaN or infinite vertex positions", "bad_mesh")
    if int(faces.max()) >= n:
        raise Refusal(f"mesh faces refer to vertices outside 0..{n - 1}", "bad_mesh")
    extras: dict[str, np.ndarray | None] = {}
    for attr in ("uvs", "normals"):
        width = MESH_ARRAYS[attr][1]  # the codec checked the columns; the rows must match the positions
        value = arrays.get(attr)
        if value is None:
            extras[attr] = None
            continue
        if value.shape != (n, width):
            raise Refusal(f"mesh {attr} must be float32 ({n}, {width})", "bad_mesh")
        if not np.isfinite(value).all():
            raise Refusal(f"mesh {attr} contain NaN or infinite values", "bad_mesh")
        extras[attr] = np.array(value)
    return MeshData(
        positions=np.array(positions), faces=np.array(faces), uvs=extras["uvs"], normals=extras["normals"]
    )


def build_request(msg: Submit, limits: Limits, capabilities: dict[str, Any] | None) -> QueuedRequest:
    """Validate a submit (its parts' names, dtypes and columns are the codec's); raises Refusal with a registered code."""
    try:
        # The common settings, and the options against the active backend's declaration (its capabilities).
        settings = JobSettings.from_wire(msg.settings, declared_options(capabilities),
                                         backend="the server's backend")
    except SettingsError as exc:
        raise Refusal(str(exc), "bad_settings") from None
    if not msg.images:
        raise Refusal("the job has no reference image", "bad_image")
    if len(msg.images) > limits.max_images:
        raise Refusal(f"the job has {len(msg.images)} images; the limit is {limits.max_images}", "too_large")
    has_mesh = msg.mesh is not None
    if settings.mode == "texture" and not has_mesh:
        raise Refusal("mode 'texture' paints a mesh you send: the job has no mesh", "bad_settings")
    if has_mesh and settings.mode != "texture":
        raise Refusal(f"a mesh is only used by mode 'texture', not {settings.mode!r}", "bad_settings")
    modes = (capabilities or {}).get("modes")
    if isinstance(modes, (list, tuple)) and settings.mode not in modes:
        raise Refusal(f"the server's backend cannot do mode {settings.mode!r} (it does {', '.join(modes)})", "unsupported")
    names = _image_names(msg, len(msg.images))
    images: list[Encoded] = []
    for value, name in zip(msg.images, names):
        assert not isinstance(value, np.ndarray)  # the codec refused arrays as images (Submit.PARTS)
        try:
            check_encoded_image(value, limits.max_image_pixels, name)
        except ImageError as exc:
            raise Refusal(str(exc), "bad_image") from None
        images.append(value)  # kept encoded (a view of the received frame): the worker decodes it
    mesh = _mesh(msg.mesh, limits) if msg.mesh is not None else None
    return QueuedRequest(
        images=images,
        settings=settings,
        mesh=mesh,
        image_names=names,
        max_pixels=limits.max_image_pixels,
        fields=msg.header(),
    )

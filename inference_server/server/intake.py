"""Turn a decoded ``submit`` message into a validated JobRequest, or one clear refusal.

Everything here treats the client as untrusted: settings go through
JobSettings' range checks, images through the pixel-capped decoder, and a
texture-only mesh through shape, dtype, index and finiteness checks.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from blender_addon.protocol.codec import Message, PartValue
from blender_addon.protocol.limits import Limits
from blender_addon.protocol.settings import JobSettings, SettingsError

from ..assets import MeshData
from ..imaging.decode import ImageError, decode_image
from ..pipeline.base import JobRequest

MESH_PARTS = {"mesh.positions", "mesh.faces", "mesh.uvs", "mesh.normals"}


class Refusal(Exception):
    """A submit the server will not run: becomes a ``rejected`` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def fingerprint(msg: Message) -> str:
    """Digest of what a submit asks for, so a resubmitted id can be told apart from a different job."""
    digest = hashlib.blake2b(digest_size=32)  # fast on large images; not a security boundary
    digest.update(repr(sorted((k, repr(v)) for k, v in msg.fields.items())).encode())
    for name, value in msg.parts.items():
        digest.update(name.encode())
        digest.update(memoryview(value).cast("B") if not isinstance(value, np.ndarray) else value.tobytes())
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


def build_request(msg: Message, limits: Limits, capabilities: dict[str, Any] | None) -> JobRequest:
    """Validate a submit; raises Refusal with a code from the protocol's error table."""
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
    images = []
    for key, name in zip(image_keys, names):
        value = msg.parts[key]
        if isinstance(value, np.ndarray):
            raise Refusal("bad_image", f"{name} must be sent as encoded bytes (PNG, JPEG or WebP), not an array")
        try:
            images.append(decode_image(bytes(value), max_pixels=limits.max_image_pixels, name=name))
        except ImageError as exc:
            raise Refusal("bad_image", str(exc)) from None
    mesh = _mesh(msg.parts, limits) if has_mesh else None
    return JobRequest(images=images, settings=settings, mesh=mesh, image_names=names)

"""Size limits: advertised in ``welcome``, enforced by the server on every message.

Clients read them to refuse oversize jobs before sending (:mod:`.preflight`,
called by ``ServerConnection.submit``); the server checks them again because a
client may be old, buggy or hostile.

The defaults fit together (``tests/protocol/test_preflight.py`` checks it):
the largest mesh within ``max_mesh_vertices``/``max_mesh_faces`` (positions,
normals, UVs, faces: 72 + 72 + 48 + 48 MB) has every array within
``max_frame_bytes`` and, with one ``max_image_pixels`` 8-bit RGBA PNG stored
uncompressed (about 64 MiB, the worst case), fits ``max_total_bytes``; a
maximal job fits the queue budget ``max_queue_bytes`` three times over; and
``max_frames`` holds the header, ``max_images`` images and the four mesh arrays.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_frames: int = 16  # per message, header included
    max_header_bytes: int = 64 * 1024  # the msgpack header frame
    max_frame_bytes: int = 96 * MiB  # any one binary frame (a 4096^2 RGBA PNG, a 6M-vertex positions array)
    max_total_bytes: int = 320 * MiB  # all frames of one message together (the largest mesh + a 4096^2 image)
    max_images: int = 8  # reference images per job
    max_image_pixels: int = 16_777_216  # width * height of one image (4096^2)
    max_mesh_vertices: int = 6_000_000  # texture-only jobs
    max_mesh_faces: int = 4_000_000
    max_queue: int = 8  # jobs waiting behind the running one
    max_queue_bytes: int = 1024 * MiB  # what the waiting jobs may hold together (their images and meshes)

    def to_wire(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> "Limits":
        """Read a welcome's limits; unknown keys (newer servers) are ignored, missing ones take defaults."""
        if not isinstance(data, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        values = {k: int(v) for k, v in data.items() if k in known and isinstance(v, int) and not isinstance(v, bool)}
        return cls(**values)

    def with_overrides(self, overrides: dict[str, int]) -> "Limits":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown limit(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        bad = sorted(k for k, v in overrides.items() if int(v) < 1)
        if bad:
            raise ValueError(f"limits must be positive: {', '.join(bad)}")
        return replace(self, **{k: int(v) for k, v in overrides.items()})


__all__ = ["Limits", "MiB"]

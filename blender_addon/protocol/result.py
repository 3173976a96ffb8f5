"""The ``result`` message and the mesh layout on the wire: one definition, used by the server and every client.

A result carries its mesh (and LOD meshes) as raw arrays, its texture maps as PNG
bytes and, when the submit asked for it, the GLB. Part names, dtypes and columns
are in :data:`MESH_ARRAYS` and :data:`MAP_NAMES`; a texture-only ``submit`` sends
its mesh with the same layout (without tangents). The server builds a
:class:`Result` from its asset (``inference_server.result_asset``), the codec
turns it into frames, and clients get the same class back from the decoder.
Pure Python plus numpy: no PNG decoding here (Blender packs the PNG bytes as they are).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from .schema import PartSpec, ProtocolError, PartValue, WireMessage, header_values, part_field

# Mesh arrays: name -> (wire dtype, columns). Wire part names are "<prefix>.<name>" (mesh.positions, lod0.faces).
MESH_ARRAYS: dict[str, tuple[str, int]] = {
    "positions": ("float32", 3),
    "faces": ("uint32", 3),  # counter-clockwise triangles
    "uvs": ("float32", 2),  # origin top-left, v grows downwards (glTF)
    "normals": ("float32", 3),
    "tangents": ("float32", 4),  # results only
}
CLIENT_MESH_ARRAYS = ("positions", "faces", "uvs", "normals")  # what a texture-only submit may send
MAP_NAMES = ("base_color", "orm", "normal")  # PNG parts "map.<name>": sRGB colour, linear ORM, +Y normal map


def mesh_specs(prefix: str, names: tuple[str, ...], code: str = "bad_message") -> tuple[PartSpec, ...]:
    return tuple(PartSpec(f"{prefix}.{n}", "array", MESH_ARRAYS[n][0], MESH_ARRAYS[n][1], code) for n in names)


def mesh_parts(prefix: str, mesh: Mapping[str, Any], names: tuple[str, ...] = tuple(MESH_ARRAYS)) -> list[tuple[str, PartValue]]:
    """The arrays of ``mesh`` present (not None) as parts, in layout order, cast to their wire dtype (no copy if already)."""
    out: list[tuple[str, PartValue]] = []
    for name in names:
        value = mesh.get(name)
        if value is not None:
            out.append((f"{prefix}.{name}", np.ascontiguousarray(value, dtype=np.dtype(MESH_ARRAYS[name][0]))))
    return out


def mesh_arrays(prefix: str, parts: Mapping[str, PartValue], names: tuple[str, ...] = tuple(MESH_ARRAYS)) -> dict[str, Any]:
    """The arrays named ``<prefix>.<name>`` in ``parts`` (the codec has checked their dtype and columns)."""
    return {name: parts[f"{prefix}.{name}"] for name in names if f"{prefix}.{name}" in parts}


def mesh_info(mesh: Mapping[str, Any]) -> dict[str, Any]:
    """The header's description of one mesh: shading and counts (the arrays travel as parts)."""
    positions, faces = mesh.get("positions"), mesh.get("faces")
    return {
        "smooth": bool(mesh.get("smooth", True)),
        "vertex_count": int(len(positions)) if positions is not None else 0,
        "face_count": int(len(faces)) if faces is not None else 0,
    }


_ALL = tuple(MESH_ARRAYS)


@dataclass
class Result(WireMessage):
    """A finished job. ``mesh`` and each LOD: numpy arrays (``positions``, ``faces``, ``uvs``, ``normals``,
    ``tangents`` when sent) and ``smooth``; ``textures``: PNG bytes by map name; ``material``: factors and
    ``maps`` (which textures exist); ``glb`` only when the submit asked ``want_glb``."""

    TYPE: ClassVar[str] = "result"
    PARTS: ClassVar[tuple[PartSpec, ...]] = (
        mesh_specs("mesh", _ALL)
        + mesh_specs("lod{i}", _ALL)
        + tuple(PartSpec(f"map.{name}") for name in MAP_NAMES)
        + (PartSpec("glb"),)
    )

    job_id: str
    mesh: dict[str, Any]
    lods: list[dict[str, Any]] = field(default_factory=list)
    textures: dict[str, bytes] = part_field(dict)
    material: dict[str, Any] = field(default_factory=dict)
    glb: bytes | None = part_field()
    timings: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def header(self) -> dict[str, Any]:
        out = super().header()
        out["mesh"] = mesh_info(self.mesh)
        out["lods"] = [mesh_info(lod) for lod in self.lods]
        return out

    def wire_parts(self) -> list[tuple[str, PartValue]]:
        parts = mesh_parts("mesh", self.mesh)
        for i, lod in enumerate(self.lods):
            parts += mesh_parts(f"lod{i}", lod)
        parts += [(f"map.{name}", self.textures[name]) for name in MAP_NAMES if self.textures.get(name)]
        if self.glb is not None:
            parts.append(("glb", self.glb))
        return parts

    @classmethod
    def from_wire(cls, fields: Mapping[str, Any], parts: Mapping[str, PartValue]) -> "Result":
        values = header_values(cls, fields)
        values["mesh"] = _mesh("mesh", fields["mesh"], parts, values["job_id"])
        lods = fields.get("lods") or []
        values["lods"] = [_mesh(f"lod{i}", info, parts, values["job_id"]) for i, info in enumerate(lods)]
        values["textures"] = {n: _bytes(parts[f"map.{n}"]) for n in MAP_NAMES if f"map.{n}" in parts}
        values["glb"] = _bytes(parts["glb"]) if "glb" in parts else None
        values["notes"] = [str(n) for n in values.get("notes") or []]
        return cls(**values)


def _bytes(value: PartValue) -> bytes:
    return value.tobytes() if isinstance(value, np.ndarray) else bytes(value)


def _mesh(prefix: str, info: Any, parts: Mapping[str, PartValue], job_id: str) -> dict[str, Any]:
    mesh: dict[str, Any] = {name: None for name in CLIENT_MESH_ARRAYS}
    mesh.update(mesh_arrays(prefix, parts))
    mesh["smooth"] = bool(info.get("smooth", True)) if isinstance(info, dict) else True
    if mesh["positions"] is None or mesh["faces"] is None:
        raise ProtocolError(f"the result has no {prefix} positions/faces arrays", job_id=job_id)
    return mesh


__all__ = ["CLIENT_MESH_ARRAYS", "MAP_NAMES", "MESH_ARRAYS", "Result", "mesh_arrays", "mesh_info", "mesh_parts", "mesh_specs"]

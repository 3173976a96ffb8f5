"""What the importer consumes: one job result, independent of where it came from.

A :class:`ResultPayload` is built from the client's ``Result`` event, or loaded
back from the history folder for a re-import. It holds plain arrays, PNG bytes
and dicts only, so the Blender layer never sees wire objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..protocol.result import CLIENT_MESH_ARRAYS, Result
from .files import write_atomic

MeshDict = dict[str, Any]  # {"positions", "faces", "uvs"?, "normals"?, "smooth"?}, glTF frame
_MESH_KEYS = CLIENT_MESH_ARRAYS  # the arrays a re-import needs (tangents are recomputed by Blender)


@dataclass
class ResultPayload:
    mesh: MeshDict
    textures: dict[str, bytes] = field(default_factory=dict)  # kind -> PNG bytes
    material: dict[str, Any] = field(default_factory=dict)  # factors: roughness_factor, ...
    lods: list[MeshDict] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def payload_from_result(result: Result) -> ResultPayload:
    """The payload of a received ``result`` message."""
    return ResultPayload(
        mesh=dict(result.mesh),
        textures={k: bytes(v) for k, v in result.textures.items() if v},
        material=dict(result.material),
        lods=[dict(m) for m in result.lods],
        provenance=dict(result.provenance),
        notes=[str(n) for n in result.notes],
        timings={str(k): float(v) for k, v in result.timings.items()},
    )


def save_payload(payload: ResultPayload, folder: Path) -> None:
    """Write a payload for later re-import: arrays in one .npz, maps as .png, the rest as JSON.

    Each file goes through a temporary name and ``os.replace`` so a crash never
    leaves a truncated file that the history would later offer to re-import.
    """
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for prefix, mesh in [("mesh", payload.mesh)] + [(f"lod{i}", m) for i, m in enumerate(payload.lods)]:
        for key in _MESH_KEYS:
            if mesh.get(key) is not None:
                arrays[f"{prefix}.{key}"] = np.asarray(mesh[key])
    meta = {
        "material": payload.material,
        "provenance": payload.provenance,
        "notes": payload.notes,
        "timings": payload.timings,
        "lod_count": len(payload.lods),
        "smooth": [bool(payload.mesh.get("smooth", True))] + [bool(m.get("smooth", True)) for m in payload.lods],
        "textures": sorted(payload.textures),
    }
    write_atomic(folder / "mesh.npz", lambda f: np.savez(f, **arrays))
    for kind, png in payload.textures.items():
        write_atomic(folder / f"{kind}.png", png)
    # meta.json last: its presence marks a complete result.
    write_atomic(folder / "meta.json", json.dumps(meta, default=str))


def load_payload(folder: Path) -> ResultPayload:
    """Inverse of :func:`save_payload`. Raises ``FileNotFoundError``/``ValueError`` when incomplete."""
    meta = json.loads((folder / "meta.json").read_text("utf-8"))
    with np.load(folder / "mesh.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    smooth = list(meta.get("smooth", []))

    def mesh(prefix: str, index: int) -> MeshDict:
        out: MeshDict = {k: arrays[f"{prefix}.{k}"] for k in _MESH_KEYS if f"{prefix}.{k}" in arrays}
        out["smooth"] = smooth[index] if index < len(smooth) else True
        return out

    textures = {kind: (folder / f"{kind}.png").read_bytes() for kind in meta.get("textures", [])}
    return ResultPayload(
        mesh=mesh("mesh", 0),
        textures=textures,
        material=dict(meta.get("material", {})),
        lods=[mesh(f"lod{i}", i + 1) for i in range(int(meta.get("lod_count", 0)))],
        provenance=dict(meta.get("provenance", {})),
        notes=list(meta.get("notes", [])),
        timings=dict(meta.get("timings", {})),
    )


REFERENCES_DIR = "references"


def save_references(folder: Path, views: list[str], names: list[str], images: list[bytes]) -> list[str]:
    """Keep a job's reference images beside its result, ``references/<view>/<original name>``.

    Regenerate and "reuse" read them back, so a result can be run again after the original
    files moved, and the asset keeps the name of its front image. Returns the paths written.
    """
    paths = []
    for view, name, data in zip(views, names, images):
        sub = folder / REFERENCES_DIR / view.replace(" ", "_")
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / (Path(name.replace("\\", "/")).name or "image.png")
        write_atomic(path, bytes(data))
        paths.append(str(path))
    return paths

"""Asset <-> result message (header fields + named binary parts).

Meshes travel as raw arrays (float32 positions/uvs/normals, uint32 faces),
texture maps as PNG bytes (what Blender packs without decoding), and the GLB
only when the client asked for one. ``result_to_asset`` is the inverse, used
by the CLI to save a file from a remote result.
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np
from PIL import Image

from blender_addon.protocol.codec import PartValue

from ..assets import Asset, MeshData, PBRMaterial

MAP_NAMES = ("base_color", "orm", "normal")
MESH_ARRAYS: dict[str, str] = {  # attribute -> dtype on the wire
    "positions": "<f4",
    "faces": "<u4",
    "uvs": "<f4",
    "normals": "<f4",
    "tangents": "<f4",
}
PNG_COMPRESS_LEVEL = 3  # zlib level: 6+ costs several times the time for a few % smaller maps


def encode_png(image: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def decode_png(data: bytes | memoryview) -> np.ndarray:
    with Image.open(io.BytesIO(bytes(data)), formats=["PNG"]) as img:
        img.load()
        return np.array(img)


def plain(value: Any, depth: int = 0) -> Any:
    """Make provenance/timings msgpack-safe: numpy scalars to Python, tuples to lists, the rest to str."""
    if depth > 8:
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, depth + 1) for v in value]
    return str(value)


def _mesh_parts(prefix: str, mesh: MeshData, parts: list[tuple[str, PartValue]]) -> dict[str, Any]:
    for attr, dtype in MESH_ARRAYS.items():
        arr = getattr(mesh, attr)
        if arr is not None:
            parts.append((f"{prefix}.{attr}", np.ascontiguousarray(arr, dtype=dtype)))
    return {"smooth": bool(mesh.smooth), "vertex_count": mesh.vertex_count, "face_count": mesh.face_count}


def material_fields(material: PBRMaterial | None) -> dict[str, Any]:
    if material is None:
        return {}
    return {
        "base_color_factor": [float(x) for x in material.base_color_factor],
        "roughness_factor": float(material.roughness_factor),
        "metallic_factor": float(material.metallic_factor),
        "occlusion_strength": float(material.occlusion_strength),
        "normal_scale": float(material.normal_scale),
        "maps": [name for name in MAP_NAMES if getattr(material, name) is not None],
    }


def asset_to_result(
    asset: Asset, job_id: str, *, glb: bytes | None = None
) -> tuple[dict[str, Any], list[tuple[str, PartValue]]]:
    """Header fields and parts of a ``result`` message for ``asset``."""
    parts: list[tuple[str, PartValue]] = []
    mesh_info = _mesh_parts("mesh", asset.mesh, parts)
    lods = [_mesh_parts(f"lod{i}", lod, parts) for i, lod in enumerate(asset.lods)]
    material = material_fields(asset.material)
    if asset.material is not None:
        for name in material["maps"]:
            parts.append((f"map.{name}", encode_png(getattr(asset.material, name))))
    if glb is not None:
        parts.append(("glb", glb))
    fields = {
        "job_id": job_id,
        "mesh": mesh_info,
        "lods": lods,
        "material": material,
        "timings": {str(k): float(v) for k, v in asset.timings.items()},
        "provenance": plain(asset.provenance),
        "notes": [str(n) for n in asset.notes],
    }
    return fields, parts


def _mesh_from(mesh: Mapping[str, Any]) -> MeshData:
    def get(attr: str) -> np.ndarray | None:
        value = mesh.get(attr)
        return None if value is None else np.array(value, dtype=MESH_ARRAYS[attr])

    positions, faces = get("positions"), get("faces")
    if positions is None or faces is None:
        raise ValueError("the result has no positions/faces")
    return MeshData(
        positions=positions,
        faces=faces,
        uvs=get("uvs"),
        normals=get("normals"),
        tangents=get("tangents"),
        smooth=bool(mesh.get("smooth", True)),
    )


def result_to_asset(result: Any) -> Asset:
    """Rebuild an Asset from a client ``Result`` event (PNG maps decoded), e.g. to save it as a file."""
    material_info: Mapping[str, Any] = result.material or {}
    material = None
    if material_info or result.textures:
        material = PBRMaterial(
            base_color_factor=tuple(material_info.get("base_color_factor", (1.0, 1.0, 1.0, 1.0))),  # type: ignore[arg-type]
            roughness_factor=float(material_info.get("roughness_factor", 1.0)),
            metallic_factor=float(material_info.get("metallic_factor", 0.0)),
            occlusion_strength=float(material_info.get("occlusion_strength", 1.0)),
            normal_scale=float(material_info.get("normal_scale", 1.0)),
        )
        for name, png in result.textures.items():
            if name in MAP_NAMES:
                setattr(material, name, decode_png(png))
    return Asset(
        mesh=_mesh_from(result.mesh),
        material=material,
        lods=[_mesh_from(lod) for lod in result.lods],
        provenance=dict(result.provenance),
        timings={str(k): float(v) for k, v in result.timings.items()},
        notes=list(result.notes),
    )

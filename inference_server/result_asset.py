"""An :class:`~inference_server.assets.Asset` <-> the protocol's :class:`~blender_addon.protocol.result.Result`.

The wire layout (part names, dtypes, map names) is ``blender_addon/protocol/result.py``'s;
this module only converts: mesh arrays as they are, texture maps to PNG bytes and back
(Pillow, which the add-on does not need: Blender packs the PNGs as they arrive).
Used by the worker and the Ray bridge (``asset_to_result``) and by ``step1x3d generate
--server`` to save a remote result as any file format (``result_to_asset``).
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np
from PIL import Image

from blender_addon.protocol.result import MAP_NAMES, MESH_ARRAYS, Result

from .assets import Asset, MeshData, PBRMaterial

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


def _mesh_dict(mesh: MeshData) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(mesh, name) for name in MESH_ARRAYS}
    out["smooth"] = bool(mesh.smooth)
    return out


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


def asset_to_result(asset: Asset, job_id: str, *, glb: bytes | None = None) -> Result:
    """The ``result`` message of ``asset`` (maps encoded as PNG); ``codec.encode_message`` makes its frames."""
    material = material_fields(asset.material)
    textures = {name: encode_png(getattr(asset.material, name)) for name in material.get("maps", [])}
    return Result(
        job_id=job_id,
        mesh=_mesh_dict(asset.mesh),
        lods=[_mesh_dict(lod) for lod in asset.lods],
        textures=textures,
        material=material,
        glb=glb,
        timings={str(k): float(v) for k, v in asset.timings.items()},
        provenance=plain(asset.provenance),
        notes=[str(n) for n in asset.notes],
    )


def _mesh_from(mesh: Mapping[str, Any]) -> MeshData:
    def get(attr: str) -> np.ndarray | None:
        value = mesh.get(attr)
        return None if value is None else np.array(value, dtype=MESH_ARRAYS[attr][0])

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


def result_to_asset(result: Result) -> Asset:
    """Rebuild an Asset from a received ``Result`` (PNG maps decoded), e.g. to save it as a file."""
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


__all__ = ["asset_to_result", "decode_png", "encode_png", "material_fields", "plain", "result_to_asset"]

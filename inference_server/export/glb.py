"""Our own binary glTF 2.0 writer: numpy arrays in, GLB bytes out, no per-vertex loops.

What goes in:
- one mesh per level of detail, attributes POSITION (+min/max), NORMAL, TEXCOORD_0,
  TANGENT (only when the material has a normal map: the validator and engines expect
  MikkTSpace tangents then) and uint16/uint32 indices;
- one material: base colour (sRGB PNG), the ORM map used twice (occlusionTexture
  reads R, metallicRoughnessTexture reads G and B, as glTF defines), normal map;
- labelling: ``asset.generator`` names the project, version and backend; the
  provenance dict, with the seconds each stage took (``stage_seconds``), goes into
  ``asset.extras`` and the root node's ``extras`` (Blender imports node extras as
  custom properties); ``KHR_xmp_json_ld`` carries the IPTC
  digital source type ``trainedAlgorithmicMedia`` (listed in extensionsUsed only);
- LODs: ``MSFT_lod`` on the root node, coarser levels as nodes outside the scene
  (engines that know MSFT_lod switch by ``MSFT_screencoverage``; the others show
  LOD 0 only, which is the point of the extension). Also in extensionsUsed only.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import numpy as np
from PIL import Image

from blender_addon.protocol import provenance as prov

from .. import __version__
from ..assets import Asset, MeshData, PBRMaterial
from .meshprep import prepare_mesh

PROJECT = "Step1X-3D for Blender"
IPTC_AI_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

_FLOAT = 5126
_UINT16 = 5123
_UINT32 = 5125
_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
# zlib level for embedded PNGs: 6 is ~3x slower than 3 at 2048^2 for ~5 % smaller files.
PNG_COMPRESS_LEVEL = 3


def generator_string(provenance: dict[str, Any]) -> str:
    backend = str(provenance.get(prov.BACKEND, "unknown"))
    return f"{PROJECT} {__version__} (backend: {backend})"


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an (H, W, C) uint8 image as PNG."""
    array = np.ascontiguousarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
    buf = io.BytesIO()
    Image.fromarray(array if array.shape[2] > 1 else array[:, :, 0], mode).save(
        buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL
    )
    return buf.getvalue()


def json_safe(value: Any) -> Any:
    """Provenance as plain JSON: tuples to lists, numpy scalars to Python, None dropped
    (Blender cannot store None as a custom property)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value if v is not None]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class _Builder:
    """Accumulates the binary chunk and the JSON arrays that index into it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.length = 0
        self.gltf: dict[str, Any] = {"bufferViews": [], "accessors": []}

    def view(self, data: bytes, target: int | None = None) -> int:
        pad = (-self.length) % 4  # accessors need 4-byte aligned views
        if pad:
            self.chunks.append(b"\x00" * pad)
            self.length += pad
        view: dict[str, Any] = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.chunks.append(data)
        self.length += len(data)
        self.gltf["bufferViews"].append(view)
        return len(self.gltf["bufferViews"]) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int, with_bounds: bool = False) -> int:
        if array.dtype == np.float32:
            component = _FLOAT
        elif array.dtype == np.uint16:
            component = _UINT16
        elif array.dtype == np.uint32:
            component = _UINT32
        else:  # pragma: no cover - callers convert first
            raise TypeError(f"unsupported accessor dtype {array.dtype}")
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
        acc: dict[str, Any] = {
            "bufferView": self.view(data.tobytes(), target),
            "componentType": component,
            "count": int(array.shape[0]),
            "type": kind,
        }
        if with_bounds:
            acc["min"] = array.min(axis=0).astype(np.float64).tolist()
            acc["max"] = array.max(axis=0).astype(np.float64).tolist()
        self.gltf["accessors"].append(acc)
        return len(self.gltf["accessors"]) - 1

    def binary(self) -> bytes:
        data = b"".join(self.chunks)
        return data + b"\x00" * ((-len(data)) % 4)


def _primitive(builder: _Builder, mesh: MeshData, material_index: int | None, with_tangents: bool) -> dict[str, Any]:
    attributes: dict[str, int] = {
        "POSITION": builder.accessor(mesh.positions.astype(np.float32), "VEC3", _ARRAY_BUFFER, with_bounds=True)
    }
    if mesh.normals is not None:
        attributes["NORMAL"] = builder.accessor(mesh.normals.astype(np.float32), "VEC3", _ARRAY_BUFFER)
    if mesh.uvs is not None:
        attributes["TEXCOORD_0"] = builder.accessor(mesh.uvs.astype(np.float32), "VEC2", _ARRAY_BUFFER)
    if with_tangents and mesh.tangents is not None:
        attributes["TANGENT"] = builder.accessor(mesh.tangents.astype(np.float32), "VEC4", _ARRAY_BUFFER)
    index_type = np.uint16 if mesh.vertex_count <= 65535 else np.uint32
    indices = builder.accessor(mesh.faces.reshape(-1).astype(index_type), "SCALAR", _ELEMENT_ARRAY_BUFFER)
    prim: dict[str, Any] = {"attributes": attributes, "indices": indices, "mode": 4}
    if material_index is not None:
        prim["material"] = material_index
    return prim


def _material(builder: _Builder, material: PBRMaterial, gltf: dict[str, Any]) -> dict[str, Any]:
    images: list[dict[str, Any]] = []
    textures: list[dict[str, Any]] = []

    def texture(image: np.ndarray, name: str) -> int:
        images.append({"bufferView": builder.view(png_bytes(image)), "mimeType": "image/png", "name": name})
        textures.append({"sampler": 0, "source": len(images) - 1, "name": name})
        return len(textures) - 1

    pbr: dict[str, Any] = {
        "baseColorFactor": [float(c) for c in material.base_color_factor],
        "metallicFactor": float(material.metallic_factor),
        "roughnessFactor": float(material.roughness_factor),
    }
    out: dict[str, Any] = {"name": "step1x3d_material", "pbrMetallicRoughness": pbr, "doubleSided": False}
    if material.base_color is not None:
        pbr["baseColorTexture"] = {"index": texture(material.base_color, "base_color")}
        if material.base_color.ndim == 3 and material.base_color.shape[2] == 4:
            out["alphaMode"] = "BLEND" if bool((material.base_color[..., 3] < 255).any()) else "OPAQUE"
    if material.orm is not None:
        orm = texture(material.orm, "occlusion_roughness_metallic")
        pbr["metallicRoughnessTexture"] = {"index": orm}
        out["occlusionTexture"] = {"index": orm, "strength": float(material.occlusion_strength)}
    if material.normal is not None:
        out["normalTexture"] = {"index": texture(material.normal, "normal"), "scale": float(material.normal_scale)}
    if images:
        gltf["images"] = images
        gltf["textures"] = textures
        # Trilinear, clamped: an atlas has no meaningful wrap-around and
        # clamping keeps border charts from sampling the opposite edge.
        gltf["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
    return out


def _xmp_packet(provenance: dict[str, Any], generator: str) -> dict[str, Any]:
    return {
        "@context": {
            "dc": "http://purl.org/dc/elements/1.1/",
            "xmp": "http://ns.adobe.com/xap/1.0/",
            "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
        },
        "xmp:CreatorTool": generator,
        "dc:description": {"@type": "rdf:Alt", "rdf:_1": {"@language": "x-default", "@value": "AI-generated 3D asset"}},
        "Iptc4xmpExt:DigitalSourceType": IPTC_AI_SOURCE,
    }


def asset_to_glb(asset: Asset, *, xmp: bool = True) -> bytes:
    """Serialise an asset (with its LOD chain, if any) to GLB bytes."""
    # A file says how long its making took; benchmarks/pipeline.py reads the stage split back.
    timings = {prov.STAGE_SECONDS: {k: round(float(v), 3) for k, v in asset.timings.items()}} if asset.timings else {}
    provenance = json_safe(prov.labelled({**asset.provenance, **timings}))
    generator = generator_string(provenance)
    has_normal_map = asset.material is not None and asset.material.normal is not None
    levels = [prepare_mesh(m, need_tangents=has_normal_map) for m in [asset.mesh, *asset.lods]]

    builder = _Builder()
    gltf = builder.gltf
    gltf["asset"] = {"version": "2.0", "generator": generator, "extras": provenance}
    extensions_used: list[str] = []
    material_index: int | None = None
    if asset.material is not None:
        gltf["materials"] = [_material(builder, asset.material, gltf)]
        material_index = 0

    gltf["meshes"] = []
    gltf["nodes"] = []
    for level, mesh in enumerate(levels):
        name = "step1x3d_asset" if level == 0 else f"step1x3d_asset_lod{level}"
        gltf["meshes"].append({"name": name, "primitives": [_primitive(builder, mesh, material_index, has_normal_map)]})
        gltf["nodes"].append({"name": name, "mesh": level})
    gltf["nodes"][0]["extras"] = provenance
    if len(levels) > 1:
        extensions_used.append("MSFT_lod")
        gltf["nodes"][0]["extensions"] = {"MSFT_lod": {"ids": list(range(1, len(levels)))}}
        # Screen coverage below which each level hands over to the next one; halving per level.
        gltf["nodes"][0]["extras"] = {**provenance, "MSFT_screencoverage": [0.5**i for i in range(1, len(levels) + 1)]}
    gltf["scenes"] = [{"name": "Scene", "nodes": [0]}]
    gltf["scene"] = 0

    if xmp:
        extensions_used.append("KHR_xmp_json_ld")
        gltf["extensions"] = {"KHR_xmp_json_ld": {"packets": [_xmp_packet(provenance, generator)]}}
        gltf["asset"]["extensions"] = {"KHR_xmp_json_ld": {"packet": 0}}
    if extensions_used:
        gltf["extensionsUsed"] = extensions_used

    binary = builder.binary()
    gltf["buffers"] = [{"byteLength": len(binary)}]
    json_chunk = json.dumps(gltf, separators=(",", ":"), allow_nan=False).encode("utf-8")
    json_chunk += b" " * ((-len(json_chunk)) % 4)  # JSON chunk is padded with spaces
    total = 12 + 8 + len(json_chunk) + 8 + len(binary)
    return b"".join([
        struct.pack("<4sII", b"glTF", 2, total),
        struct.pack("<I4s", len(json_chunk), b"JSON"), json_chunk,
        struct.pack("<I4s", len(binary), b"BIN\x00"), binary,
    ])


__all__ = ["asset_to_glb", "generator_string", "json_safe", "png_bytes", "PROJECT", "IPTC_AI_SOURCE"]

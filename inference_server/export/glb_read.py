"""Read a GLB we wrote (or any single-mesh glTF binary) back into an Asset, for ``step1x3d convert``.

What comes back: LOD 0 (the scene's first mesh node, its transform ignored: our
writer never sets one), the MSFT_lod levels, the PBR maps decoded to uint8 arrays
with their factors, and the provenance from ``asset.extras``. Anything the asset type
cannot hold (several primitives, skins, morph targets) is refused in one sentence.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from blender_addon.protocol.errors import Step1X3DError

from ..assets import Asset, MeshData, PBRMaterial

_COMPONENT = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def split_glb(data: bytes, name: str = "input") -> tuple[dict[str, Any], bytes]:
    """The JSON and binary chunks of a GLB file."""
    if len(data) < 20 or data[:4] != b"glTF":
        raise Step1X3DError(f"{name} is not a binary glTF (.glb) file", "bad_file")
    _, version, total = struct.unpack_from("<4sII", data, 0)
    if version != 2:
        raise Step1X3DError(f"{name} is glTF version {version}; only glTF 2.0 is read", "bad_file")
    offset, gltf, binary = 12, None, b""
    while offset + 8 <= min(total, len(data)):
        length, kind = struct.unpack_from("<I4s", data, offset)
        chunk = data[offset + 8: offset + 8 + length]
        if kind == b"JSON":
            gltf = json.loads(chunk.decode("utf-8"))
        elif kind == b"BIN\x00":
            binary = chunk
        offset += 8 + length
    if gltf is None:
        raise Step1X3DError(f"{name} has no JSON chunk", "bad_file")
    return gltf, binary


class _Reader:
    def __init__(self, gltf: dict[str, Any], binary: bytes, name: str) -> None:
        self.gltf, self.binary, self.name = gltf, binary, name

    def view_bytes(self, index: int) -> bytes:
        view = self.gltf["bufferViews"][index]
        if view.get("buffer", 0) != 0 or "uri" in self.gltf["buffers"][0]:
            raise Step1X3DError(f"{self.name} keeps data in external files; convert reads self-contained .glb files",
                                "bad_file")
        start = int(view.get("byteOffset", 0))
        return self.binary[start: start + int(view["byteLength"])]

    def accessor(self, index: int) -> np.ndarray:
        acc = self.gltf["accessors"][index]
        dtype = np.dtype(_COMPONENT[acc["componentType"]]).newbyteorder("<")
        width, count = _WIDTH[acc["type"]], int(acc["count"])
        view = self.gltf["bufferViews"][acc["bufferView"]]
        raw = self.view_bytes(acc["bufferView"])
        start = int(acc.get("byteOffset", 0))
        stride = int(view.get("byteStride", 0)) or dtype.itemsize * width
        rows: np.ndarray = np.ndarray((count, width), dtype=dtype, buffer=raw, offset=start, strides=(stride, dtype.itemsize))
        out = np.array(rows)
        if acc.get("normalized") and out.dtype.kind in "ui":
            out = out.astype(np.float32) / float(np.iinfo(out.dtype).max)
        return out if width > 1 else out[:, 0]

    def image(self, texture_index: int) -> np.ndarray:
        source = self.gltf["textures"][texture_index]["source"]
        image = self.gltf["images"][source]
        if "bufferView" not in image:
            raise Step1X3DError(f"{self.name} refers to an external image; convert reads self-contained .glb files",
                                "bad_file")
        with Image.open(io.BytesIO(self.view_bytes(image["bufferView"]))) as im:
            mode = im.mode if im.mode in ("RGB", "RGBA") else ("RGBA" if "A" in im.getbands() else "RGB")
            return np.asarray(im.convert(mode), dtype=np.uint8)

    def mesh(self, mesh_index: int) -> tuple[MeshData, int | None]:
        primitives = self.gltf["meshes"][mesh_index]["primitives"]
        if len(primitives) != 1:
            raise Step1X3DError(f"{self.name} has a mesh of {len(primitives)} parts; convert reads one-part meshes "
                                "(as step1x3d writes them)", "bad_file")
        prim = primitives[0]
        if prim.get("mode", 4) != 4 or "targets" in prim:
            raise Step1X3DError(f"{self.name} holds no plain triangle mesh (points, lines or morph targets)",
                                "bad_file")
        attrs = prim["attributes"]
        positions = self.accessor(attrs["POSITION"]).astype(np.float32)
        if "indices" in prim:
            faces = self.accessor(prim["indices"]).astype(np.uint32).reshape(-1, 3)
        else:
            faces = np.arange(len(positions), dtype=np.uint32).reshape(-1, 3)
        get = lambda key: self.accessor(attrs[key]).astype(np.float32) if key in attrs else None  # noqa: E731
        mesh = MeshData(positions=positions, faces=faces, uvs=get("TEXCOORD_0"), normals=get("NORMAL"),
                        tangents=get("TANGENT"))
        return mesh, prim.get("material")

    def material(self, index: int) -> PBRMaterial:
        mat = self.gltf["materials"][index]
        pbr = mat.get("pbrMetallicRoughness", {})
        out = PBRMaterial(
            base_color_factor=tuple(float(c) for c in pbr.get("baseColorFactor", (1.0, 1.0, 1.0, 1.0))),  # type: ignore[arg-type]
            roughness_factor=float(pbr.get("roughnessFactor", 1.0)),
            metallic_factor=float(pbr.get("metallicFactor", 1.0)),
        )
        if "baseColorTexture" in pbr:
            out.base_color = self.image(pbr["baseColorTexture"]["index"])
        mr = pbr.get("metallicRoughnessTexture")
        occ = mat.get("occlusionTexture")
        if mr is not None or occ is not None:
            out.orm = self._orm(mr, occ)
            if occ is not None:
                out.occlusion_strength = float(occ.get("strength", 1.0))
        if "normalTexture" in mat:
            out.normal = self.image(mat["normalTexture"]["index"])[:, :, :3]
            out.normal_scale = float(mat["normalTexture"].get("scale", 1.0))
        return out

    def _orm(self, mr: dict[str, Any] | None, occ: dict[str, Any] | None) -> np.ndarray:
        """One ORM image from the glTF slots (ours share one texture; others may not)."""
        mr_img = self.image(mr["index"])[:, :, :3] if mr is not None else None
        if occ is None or (mr is not None and occ["index"] == mr["index"]):
            assert mr_img is not None
            orm = mr_img.copy()
            if occ is None:
                orm[:, :, 0] = 255  # no occlusion: fully lit
            return orm
        occ_img = self.image(occ["index"])
        if mr_img is None:
            orm = np.zeros(occ_img.shape[:2] + (3,), np.uint8)
            orm[:, :, 1] = 255  # roughness 1, metallic 0: the glTF defaults with factors applied later
            orm[:, :, 0] = occ_img[:, :, 0]
            return orm
        if occ_img.shape[:2] != mr_img.shape[:2]:
            resized = Image.fromarray(occ_img[:, :, 0]).resize((mr_img.shape[1], mr_img.shape[0]), Image.Resampling.BILINEAR)
            occ_img = np.asarray(resized)[:, :, None]
        orm = mr_img.copy()
        orm[:, :, 0] = occ_img[:, :, 0]
        return orm


def glb_to_asset(data: bytes, name: str = "input") -> Asset:
    """Decode GLB bytes into an Asset (LOD 0, MSFT_lod levels, PBR maps, provenance)."""
    gltf, binary = split_glb(data, name)
    return _asset(gltf, binary, name)


def _asset(gltf: dict[str, Any], binary: bytes, name: str) -> Asset:
    reader = _Reader(gltf, binary, name)
    try:
        nodes = gltf.get("nodes", [])
        scene = gltf.get("scenes", [{}])[gltf.get("scene", 0)]
        roots = [i for i in scene.get("nodes", range(len(nodes))) if "mesh" in nodes[i]]
        if not roots:
            raise Step1X3DError(f"{name} has no mesh in its scene", "bad_file")
        if len(roots) > 1:
            raise Step1X3DError(f"{name} has {len(roots)} mesh objects; convert reads one-object results (as step1x3d "
                                "writes them)", "bad_file")
        root = nodes[roots[0]]
        if "skin" in root:
            raise Step1X3DError(f"{name} holds a skinned mesh; convert reads static meshes", "bad_file")
        mesh, material_index = reader.mesh(root["mesh"])
        lods = [reader.mesh(nodes[i]["mesh"])[0] for i in root.get("extensions", {}).get("MSFT_lod", {}).get("ids", [])]
        material = reader.material(material_index) if material_index is not None else None
    except (KeyError, IndexError, TypeError) as exc:
        raise Step1X3DError(f"{name} is not a valid glTF file (missing or wrong entry {exc})", "bad_file") from None
    provenance = dict(gltf.get("asset", {}).get("extras") or {})
    return Asset(mesh=mesh, material=material, lods=lods, provenance=provenance)


def read_gltf(path: Path) -> Asset:
    """Read a .glb, or a .gltf with its data embedded (as ``save_asset`` writes it), into an Asset."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix.lower() != ".gltf":
        return glb_to_asset(data, path.name)
    try:
        gltf = json.loads(data.decode("utf-8"))
        uri = gltf["buffers"][0].get("uri", "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise Step1X3DError(f"{path.name} is not a glTF JSON file", "bad_file") from None
    prefix = "data:application/octet-stream;base64,"
    if not uri.startswith(prefix):
        raise Step1X3DError(f"{path.name} keeps its data in external files; convert reads self-contained files",
                            "bad_file")
    binary = base64.b64decode(uri[len(prefix):])
    del gltf["buffers"][0]["uri"]
    return _asset(gltf, binary, path.name)


__all__ = ["glb_to_asset", "read_gltf", "split_glb"]

"""Write an asset to disk by suffix (the list: ``formats.FORMATS``).

.glb/.gltf, .obj (+ .mtl + PNGs beside it), .ply and .stl are written here; .3mf, USD,
STEP and FBX by their own modules (imported when asked for: pxr, OCP and bpy are heavy
optional dependencies).

Every file is written to a temporary name and moved into place with ``os.replace``,
so a reader (the server announcing results, Blender importing) never sees half a file.
OBJ, PLY and STL cannot hold an LOD chain: their LODs are written only with
``lods_as_files=True`` (``name_lod1.obj`` ...), sharing LOD 0's textures.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blender_addon.protocol.provenance import BACKEND, SEED, labelled

from ..assets import Asset, MeshData, PBRMaterial
from .formats import SUFFIXES, output_suffix
from .glb import asset_to_glb, generator_string, json_safe, png_bytes
from .meshprep import prepare_mesh

ENGINES = ("unity", "unreal")


@dataclass(frozen=True)
class ExportOptions:
    """Format-specific choices; each writer reads only its own."""

    engine: str = "unity"  # .fbx: axes, units and map packing of this engine
    step_faces: int | None = None  # .step: face budget (None: step.DEFAULT_STEP_FACES)
    step_merge_planar: bool = False  # .step: merge coplanar triangles into planar faces
    step_schema: str = "AP214"  # .step: AP214 or AP242


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` through a temporary name and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # the pid: two writers never share a temp file
    with open(tmp, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


def _lod_path(path: Path, level: int) -> Path:
    return path.with_name(f"{path.stem}_lod{level}{path.suffix}")


def save_asset(asset: Asset, path: Path, *, lods_as_files: bool = False,
               options: ExportOptions | None = None) -> list[Path]:
    """Write ``asset`` to ``path`` (format from the suffix); return every file written."""
    path = Path(path)
    suffix = output_suffix(path)
    options = options or ExportOptions()
    path.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if suffix in (".3mf", ".usd", ".usda", ".usdc", ".usdz", ".step", ".stp", ".fbx", ".gltf"):
        return _save_other(asset, path, suffix, options)
    if suffix == ".glb":
        if lods_as_files and asset.lods:
            written.append(write_atomic(path, asset_to_glb(_single(asset, asset.mesh))))
            for level, lod in enumerate(asset.lods, start=1):
                written.append(write_atomic(_lod_path(path, level), asset_to_glb(_single(asset, lod))))
        else:
            written.append(write_atomic(path, asset_to_glb(asset)))
        return written

    meshes = [asset.mesh, *(asset.lods if lods_as_files else [])]
    if suffix == ".obj":
        mtl_name, _ = _write_obj_material(asset, path, written)
        for level, mesh in enumerate(meshes):
            target = path if level == 0 else _lod_path(path, level)
            written.append(write_atomic(target, obj_text(mesh, mtl_name, _header(asset))))
    elif suffix == ".ply":
        for level, mesh in enumerate(meshes):
            target = path if level == 0 else _lod_path(path, level)
            written.append(write_atomic(target, ply_bytes(mesh, asset.material, _header(asset))))
    else:
        for level, mesh in enumerate(meshes):
            target = path if level == 0 else _lod_path(path, level)
            written.append(write_atomic(target, stl_bytes(mesh, _header(asset))))
    return written


def _save_other(asset: Asset, path: Path, suffix: str, options: ExportOptions) -> list[Path]:
    """Formats with one file per asset (LOD 0 only, except .gltf which keeps the chain)."""
    if suffix == ".gltf":
        return [write_atomic(path, gltf_text(asset_to_glb(asset)))]
    if suffix == ".3mf":
        from .threemf import write_3mf

        return write_3mf(asset, path)
    if suffix == ".usdz":
        from .usd import write_usdz

        return write_usdz(asset, path)
    if suffix in (".usd", ".usda", ".usdc"):
        from .usd import write_usd

        return write_usd(asset, path)
    if suffix in (".step", ".stp"):
        from .step import DEFAULT_STEP_FACES, write_step

        budget = options.step_faces if options.step_faces is not None else DEFAULT_STEP_FACES
        result = write_step(asset, path, face_budget=budget, merge_planar=options.step_merge_planar,
                            schema=options.step_schema)
        return [result.path]
    from .fbx import write_fbx  # .fbx: the only suffix left

    return write_fbx(asset, path, engine=options.engine)


def gltf_text(glb: bytes) -> str:
    """A .glb as one self-contained .gltf: the binary chunk becomes a base64 data URI."""
    from .glb_read import split_glb

    gltf, binary = split_glb(glb)
    gltf["buffers"] = [{"byteLength": len(binary),
                        "uri": "data:application/octet-stream;base64," + base64.b64encode(binary).decode("ascii")}]
    return json.dumps(gltf, separators=(",", ":"), allow_nan=False)


def _single(asset: Asset, mesh: MeshData) -> Asset:
    return Asset(mesh=mesh, material=asset.material, provenance=asset.provenance)


def _header(asset: Asset) -> str:
    prov = json_safe(labelled(asset.provenance))
    return f"{generator_string(prov)}; AI-generated; backend={prov.get(BACKEND, 'unknown')}; seed={prov.get(SEED, '')}"


# --- OBJ -------------------------------------------------------------------------

def _rows(fmt: str, array: np.ndarray) -> str:
    """Format every row of ``array`` with ``fmt`` in one C-level % operation."""
    if array.shape[0] == 0:
        return ""
    return (fmt * array.shape[0]) % tuple(array.ravel().tolist())


def obj_text(mesh: MeshData, mtl_name: str | None, header: str) -> str:
    m = prepare_mesh(mesh)
    parts = [f"# {header}\n"]
    if mtl_name:
        parts.append(f"mtllib {mtl_name}\nusemtl step1x3d_material\n")
    parts.append(_rows("v %.6f %.6f %.6f\n", m.positions.astype(np.float64)))
    idx = m.faces.astype(np.int64) + 1
    has_uv, has_n = m.uvs is not None, m.normals is not None
    if m.uvs is not None:
        uv = m.uvs.astype(np.float64).copy()
        uv[:, 1] = 1.0 - uv[:, 1]  # OBJ's v grows upwards from the bottom-left
        parts.append(_rows("vt %.6f %.6f\n", uv))
    if m.normals is not None:
        parts.append(_rows("vn %.5f %.5f %.5f\n", m.normals.astype(np.float64)))
    if has_uv and has_n:
        parts.append(_rows("f %d/%d/%d %d/%d/%d %d/%d/%d\n", np.repeat(idx, 3, axis=1)))
    elif has_uv:
        parts.append(_rows("f %d/%d %d/%d %d/%d\n", np.repeat(idx, 2, axis=1)))
    elif has_n:
        parts.append(_rows("f %d//%d %d//%d %d//%d\n", np.repeat(idx, 2, axis=1)))
    else:
        parts.append(_rows("f %d %d %d\n", idx))
    return "".join(parts)


def _write_obj_material(asset: Asset, path: Path, written: list[Path]) -> tuple[str | None, list[Path]]:
    material = asset.material
    if material is None:
        return None, []
    stem = path.stem
    lines = [f"# {_header(asset)}", "newmtl step1x3d_material"]
    r, g, b, _ = material.base_color_factor
    lines.append(f"Kd {r:.4f} {g:.4f} {b:.4f}")
    lines += ["Ka 1.0 1.0 1.0", "Ks 0.0 0.0 0.0", "illum 2"]
    # PBR extension of MTL (read by Blender's OBJ importer): roughness/metallic.
    lines.append(f"Pr {material.roughness_factor:.4f}")
    lines.append(f"Pm {material.metallic_factor:.4f}")
    textures: list[Path] = []

    def save(image: np.ndarray, suffix: str) -> str:
        target = path.with_name(f"{stem}_{suffix}.png")
        written.append(write_atomic(target, png_bytes(image)))
        textures.append(target)
        return target.name

    if material.base_color is not None:
        lines.append(f"map_Kd {save(material.base_color, 'basecolor')}")
    if material.orm is not None:
        lines.append(f"map_Pr {save(material.orm[:, :, 1], 'roughness')}")
        if int(material.orm[:, :, 2].max()) > 0:
            lines.append(f"map_Pm {save(material.orm[:, :, 2], 'metallic')}")
        # Occlusion has no MTL slot Blender reads; ship it for other tools (map_Ka convention).
        lines.append(f"map_Ka {save(material.orm[:, :, 0], 'occlusion')}")
    if material.normal is not None:
        lines.append(f"map_Bump -bm {material.normal_scale:.4f} {save(material.normal, 'normal')}")
    mtl = path.with_suffix(".mtl")
    written.append(write_atomic(mtl, "\n".join(lines) + "\n"))
    return mtl.name, textures


# --- PLY -------------------------------------------------------------------------

def _vertex_colours(mesh: MeshData, material: PBRMaterial | None) -> np.ndarray | None:
    """Base colour sampled at each vertex's UV (nearest texel), for viewers without textures."""
    if material is None or material.base_color is None or mesh.uvs is None:
        return None
    image = material.base_color
    h, w = image.shape[:2]
    col = np.clip((mesh.uvs[:, 0] * w).astype(np.int64), 0, w - 1)
    row = np.clip((mesh.uvs[:, 1] * h).astype(np.int64), 0, h - 1)
    rgb = image[row, col, :3].astype(np.float64)
    factor = np.asarray(material.base_color_factor[:3])
    return np.clip(rgb * factor, 0, 255).astype(np.uint8)


def ply_bytes(mesh: MeshData, material: PBRMaterial | None, header: str) -> bytes:
    m = prepare_mesh(mesh)
    n = m.vertex_count
    fields: list[tuple[str, str]] = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if m.normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if m.uvs is not None:
        fields += [("s", "<f4"), ("t", "<f4")]
    colours = _vertex_colours(m, material)
    if colours is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(n, dtype=fields)
    vertex["x"], vertex["y"], vertex["z"] = m.positions.T
    if m.normals is not None:
        vertex["nx"], vertex["ny"], vertex["nz"] = m.normals.T
    if m.uvs is not None:
        vertex["s"] = m.uvs[:, 0]
        vertex["t"] = 1.0 - m.uvs[:, 1]  # PLY texture coordinates follow the OBJ convention
    if colours is not None:
        vertex["red"], vertex["green"], vertex["blue"] = colours.T
    face = np.empty(m.face_count, dtype=[("n", "u1"), ("v", "<u4", (3,))])
    face["n"] = 3
    face["v"] = m.faces
    ply_type = {"<f4": "float", "u1": "uchar"}
    lines = ["ply", "format binary_little_endian 1.0", f"comment {header}", f"element vertex {n}"]
    lines += [f"property {ply_type[t]} {name}" for name, t in fields]
    lines += [f"element face {m.face_count}", "property list uchar uint vertex_indices", "end_header"]
    return ("\n".join(lines) + "\n").encode("ascii") + vertex.tobytes() + face.tobytes()


# --- STL -------------------------------------------------------------------------

def stl_bytes(mesh: MeshData, header: str) -> bytes:
    pos = np.asarray(mesh.positions, dtype=np.float32)
    tri = pos[np.asarray(mesh.faces, dtype=np.int64)]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).astype(np.float64)
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = np.divide(normal, length, out=np.zeros_like(normal), where=length > 0)
    record = np.zeros(len(tri), dtype=[("n", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    record["n"] = normal
    record["v"] = tri
    head = header.encode("ascii", "replace")[:80].ljust(80, b" ")
    if head.lower().startswith(b"solid"):  # would make readers treat it as ASCII STL
        head = b"#" + head[:79]
    return head + struct.pack("<I", len(tri)) + record.tobytes()


__all__ = ["ENGINES", "SUFFIXES", "ExportOptions", "gltf_text", "obj_text", "ply_bytes", "save_asset",
           "stl_bytes", "write_atomic"]

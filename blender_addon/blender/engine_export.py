"""FBX for Unity or Unreal from Blender objects: the add-on's "Export for ..." buttons and ``step1x3d convert``.

Works on any material wired the way Blender's glTF importer (and our importer) wire
it: images reached from the Principled BSDF through Separate Color, Math multiply,
Mix multiply or Normal Map nodes, occlusion on the glTF Material Output group. The
maps are read back as pixels, packed the engine's way (``core.engines``), written as
PNGs beside the FBX, and wired into a temporary copy of the material for the export
(so the FBX's own texture slots hold them, embedded); the scene is left as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import bpy
import numpy as np

from ..core.engines import EnginePreset, grey, metallic_smoothness, orm, preset
from ..core.files import write_atomic
from ..core.png import encode_png
from ..protocol.errors import Step1X3DError

_CHANNELS = {"Red": 0, "R": 0, "Green": 1, "G": 1, "Blue": 2, "B": 2}
_OCCLUSION_GROUPS = ("glTF Material Output", "glTF Settings")
# zlib level for the maps written beside the FBX: 2048^2 maps stay around a second each.
PNG_LEVEL = 3


class EngineExportError(Step1X3DError):
    """Nothing exportable, or Blender's FBX exporter failed (message: one sentence).

    A thin subclass because the export operator catches this family.
    """

    default_code = "export_failed"


@dataclass
class Source:
    """Where a Principled input gets its value: an image channel times a factor, or a constant."""

    image: Any = None  # bpy.types.Image
    node: Any = None  # the ShaderNodeTexImage holding it
    channel: int | None = None  # None: the colour (RGB)
    factor: float = 1.0
    constant: float = 0.0


def _trace(socket: Any, constant: float) -> Source:
    """Follow links upstream from ``socket`` to the image that drives it."""
    found = Source(constant=constant)
    while socket is not None and socket.is_linked:
        link = socket.links[0]
        node = link.from_node
        kind = node.bl_idname
        if kind == "ShaderNodeTexImage":
            found.image, found.node = node.image, node
            if link.from_socket.name == "Alpha":
                found.channel = 3
            return found
        if kind in ("ShaderNodeSeparateColor", "ShaderNodeSeparateRGB"):
            found.channel = _CHANNELS.get(link.from_socket.name, 0)
            socket = node.inputs[0]
        elif kind == "ShaderNodeMath" and node.operation == "MULTIPLY":
            linked = [s for s in node.inputs[:2] if s.is_linked]
            other = [s for s in node.inputs[:2] if not s.is_linked]
            if other:
                found.factor *= float(other[0].default_value)
            socket = linked[0] if linked else None
        elif kind == "ShaderNodeNormalMap":
            socket = node.inputs["Color"]
        elif kind == "ShaderNodeMix":
            socket = node.inputs[6]  # A (colour) of a multiply mix, as our importer builds it
        else:
            return Source(constant=constant)  # a node we cannot read back: use the constant
    return found


def pixels(image: Any) -> np.ndarray:
    """An image's pixels as (H, W, 4) float32, top row first (Blender stores bottom row first)."""
    width, height = image.size
    channels = image.channels
    if width == 0 or height == 0:
        raise EngineExportError(f"image {image.name} has no pixels (missing file?)")
    flat = np.empty(width * height * channels, dtype=np.float32)
    image.pixels.foreach_get(flat)
    values = flat.reshape(height, width, channels)[::-1]
    if channels == 4:
        return values
    out = np.ones((height, width, 4), np.float32)
    out[:, :, :min(channels, 3)] = values[:, :, :3]
    return out


def _channel(source: Source, shape: tuple[int, int]) -> np.ndarray:
    """A Source as an (H, W) float map of ``shape`` (constants broadcast)."""
    if source.image is None:
        return np.full(shape, source.constant, np.float32)
    px = pixels(source.image)
    if px.shape[:2] != shape:
        raise EngineExportError("the roughness, metallic and occlusion maps differ in size; pack them first")
    values = px[:, :, source.channel] if source.channel is not None else px[:, :, 0]
    return np.clip(values * source.factor, 0.0, 1.0)


def _principled(material: Any) -> Any:
    if material is None or material.node_tree is None:
        return None
    for node in material.node_tree.nodes:
        if node.bl_idname == "ShaderNodeBsdfPrincipled":
            return node
    return None


def _occlusion_socket(material: Any) -> Any:
    for node in material.node_tree.nodes:
        tree = getattr(node, "node_tree", None)
        if node.bl_idname == "ShaderNodeGroup" and tree is not None and tree.name.startswith(_OCCLUSION_GROUPS):
            return node.inputs.get("Occlusion")
    return None


@dataclass
class PackedMaps:
    """The maps an engine gets, (H, W, C) uint8 top row first, by file-name tag."""

    images: dict[str, np.ndarray]


def pack_material(material: Any, engine: EnginePreset) -> PackedMaps:
    """Read ``material``'s maps and pack them the way ``engine`` expects."""
    bsdf = _principled(material)
    if bsdf is None:
        return PackedMaps({})
    images: dict[str, np.ndarray] = {}
    base = _trace(bsdf.inputs["Base Color"], 1.0)
    if base.image is not None:
        images["BaseColor"] = np.clip(pixels(base.image) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    normal = _trace(bsdf.inputs["Normal"], 0.0)
    if normal.image is not None:
        images["Normal"] = np.clip(pixels(normal.image)[:, :, :3] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rough = _trace(bsdf.inputs["Roughness"], float(bsdf.inputs["Roughness"].default_value))
    metal = _trace(bsdf.inputs["Metallic"], float(bsdf.inputs["Metallic"].default_value))
    occ_socket = _occlusion_socket(material)
    occ = _trace(occ_socket, 1.0) if occ_socket is not None else Source(constant=1.0)
    driven = [s for s in (rough, metal, occ) if s.image is not None]
    if driven:
        width, height = driven[0].image.size
        shape = (height, width)
        r, m, o = _channel(rough, shape), _channel(metal, shape), _channel(occ, shape)
        if engine.name == "unity":
            images["MetallicSmoothness"] = metallic_smoothness(m, r)
            images["Occlusion"] = grey(o)
        else:
            images["ORM"] = orm(o, r, m)
    return PackedMaps(images)


def _wire_export_material(material: Any, maps: dict[str, Any], engine: EnginePreset) -> Any:
    """A copy of ``material`` whose Principled inputs read the packed maps (``maps``: tag -> bpy image)."""
    copy = material.copy()
    copy.name = f"{material.name}_{engine.label}"
    tree = copy.node_tree
    bsdf = _principled(copy)
    nodes, links = tree.nodes, tree.links

    def image_node(tag: str, y: float) -> Any:
        node = nodes.new("ShaderNodeTexImage")
        node.image = maps[tag]
        node.location = (-900, y)
        return node

    def relink(socket: Any, output: Any) -> None:
        for link in list(socket.links):
            links.remove(link)
        links.new(output, socket)

    for tag, socket in (("BaseColor", "Base Color"), ("Normal", "Normal")):
        found = _trace(bsdf.inputs[socket], 0.0)
        if tag in maps and found.node is not None:
            found.node.image = maps[tag]  # the file beside the FBX: embedded under its own name
    if "MetallicSmoothness" in maps:
        tex = image_node("MetallicSmoothness", -100)
        relink(bsdf.inputs["Metallic"], tex.outputs["Color"])  # R = G = B = metallic
        invert = nodes.new("ShaderNodeMath")
        invert.operation = "SUBTRACT"
        invert.inputs[0].default_value = 1.0
        links.new(tex.outputs["Alpha"], invert.inputs[1])
        relink(bsdf.inputs["Roughness"], invert.outputs[0])  # roughness = 1 - smoothness
    if "ORM" in maps:
        tex = image_node("ORM", -100)
        sep = nodes.new("ShaderNodeSeparateColor")
        links.new(tex.outputs["Color"], sep.inputs[0])
        relink(bsdf.inputs["Roughness"], sep.outputs["Green"])
        relink(bsdf.inputs["Metallic"], sep.outputs["Blue"])
        occ_socket = _occlusion_socket(copy)
        if occ_socket is not None:
            relink(occ_socket, sep.outputs["Red"])
    return copy


def _shareable(path: Path) -> None:
    """Give an export the permissions a newly created file gets (the atomic write's temp file is 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def map_path(fbx: Path, tag: str) -> Path:
    return fbx.with_name(f"{fbx.stem}_{tag}.png")


def export_fbx(objects: Sequence[Any], path: Path, engine: str) -> list[Path]:
    """Export ``objects`` (meshes) to ``path`` for ``engine``; return the FBX and the maps written beside it."""
    chosen = preset(engine)
    meshes = [o for o in objects if o.type == "MESH"]
    if not meshes:
        raise EngineExportError("select a mesh object to export")
    path = Path(path)
    written: list[Path] = []
    materials = []
    for obj in meshes:
        for slot in obj.material_slots:
            if slot.material is not None and slot.material not in materials:
                materials.append(slot.material)

    work: Path | None = None
    temp_images: list[Any] = []
    temp_materials: list[Any] = []
    swapped: list[tuple[Any, int, Any]] = []
    layer: Any = bpy.context.view_layer
    selection = [(o, o.select_get()) for o in layer.objects]
    active = layer.objects.active
    try:
        replacements: dict[Any, Any] = {}
        for index, material in enumerate(materials):
            packed = pack_material(material, chosen).images
            suffix = "" if index == 0 else f"_{index}"
            loaded: dict[str, Any] = {}
            for tag, image in packed.items():
                target = map_path(path, tag + suffix)
                write_atomic(target, encode_png(image, level=PNG_LEVEL))
                _shareable(target)
                written.append(target)
                img = bpy.data.images.load(str(target))
                if tag != "BaseColor":
                    colorspace: Any = img.colorspace_settings
                    colorspace.name = "Non-Color"
                temp_images.append(img)
                loaded[tag] = img
            if loaded:
                replacements[material] = _wire_export_material(material, loaded, chosen)
                temp_materials.append(replacements[material])
        for obj in meshes:
            for i, slot in enumerate(obj.material_slots):
                if slot.material in replacements:
                    swapped.append((obj, i, slot.material))
                    slot.material = replacements[slot.material]
        for obj, _ in selection:
            obj.select_set(False)
        for obj in meshes:
            obj.select_set(True)
        layer.objects.active = meshes[0]
        # Written under its final name (the FBX records texture paths relative to itself) in a
        # private folder beside it, then moved into place: readers never see half a file.
        work = Path(tempfile.mkdtemp(prefix=".step1x3d-fbx-", dir=path.parent))
        tmp = work / path.name
        fbx: Any = bpy.ops.export_scene.fbx  # the preset's strings are the exporter's enum values
        result = fbx(
            filepath=str(tmp), use_selection=True, object_types={"MESH"},
            apply_unit_scale=True, global_scale=1.0, apply_scale_options=chosen.apply_scale_options,
            axis_up=chosen.axis_up, axis_forward=chosen.axis_forward,
            bake_space_transform=chosen.bake_space_transform,
            mesh_smooth_type="FACE", use_tspace=True, use_custom_props=True, add_leaf_bones=False,
            path_mode="COPY", embed_textures=True, use_mesh_modifiers=True,
        )
        if "FINISHED" not in result or not tmp.is_file():
            raise EngineExportError(f"Blender's FBX exporter did not write {path.name}")
        tmp.replace(path)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        for obj, i, material in swapped:
            obj.material_slots[i].material = material
        for material in temp_materials:
            bpy.data.materials.remove(material)
        for img in temp_images:
            bpy.data.images.remove(img)
        for obj, was in selection:
            try:
                obj.select_set(was)
            except (ReferenceError, RuntimeError):
                pass
        layer.objects.active = active
    return [path, *written]


__all__ = ["EngineExportError", "PackedMaps", "export_fbx", "map_path", "pack_material", "pixels"]

"""Packed images and a Principled BSDF wired the way Blender's glTF importer wires them.

- base colour map (sRGB) -> Base Color
- ORM map (Non-Color) -> Separate Color: G -> Roughness, B -> Metallic, and R (occlusion,
  which Principled has no socket for) -> the "Occlusion" input of the glTF add-on's
  "glTF Material Output" group node: no effect on shading, but Blender's glTF exporter reads
  the occlusion texture from there, so a re-export keeps the AO
- normal map (Non-Color, tangent space +Y like glTF) -> Normal Map node -> Normal
"""

from __future__ import annotations

from typing import Any, Mapping

import bpy

from ..core.naming import texture_name

_NON_COLOR = "Non-Color"
# The group the glTF add-on creates on import and looks for on export (by name prefix, with an
# "Occlusion" input); "glTF Settings" is its name before Blender 3.x's rename.
GLTF_OUTPUT_GROUP = "glTF Material Output"
OCCLUSION_INPUT = "Occlusion"
# Blender 5.0 deprecates Material.use_nodes (every material uses nodes); older ones need it set.
NEEDS_USE_NODES = bpy.app.version < (5, 0, 0)


def packed_image(name: str, png: bytes, *, non_color: bool) -> bpy.types.Image:
    """An image packed from PNG bytes: no temporary file, decoded lazily by Blender.

    ``images.new`` + ``pack(data=...)`` + ``source = 'FILE'`` is what the glTF
    importer does; it costs ~80 ms for a 2K map instead of writing pixels.
    """
    image = bpy.data.images.new(name, 8, 8)
    try:
        image.pack(data=png, data_len=len(png))
        image.source = "FILE"
        if non_color:
            colorspace: Any = image.colorspace_settings
            colorspace.name = _NON_COLOR
    except Exception:
        bpy.data.images.remove(image)
        raise
    return image


def build_material(
    name: str,
    textures: Mapping[str, bytes],
    factors: Mapping[str, Any],
    *,
    uv_map: str = "UVMap",
    created_images: list[bpy.types.Image] | None = None,
) -> bpy.types.Material:
    """A new material named ``name``; images it creates are appended to ``created_images`` for cleanup."""
    images = created_images if created_images is not None else []
    mat = bpy.data.materials.new(name)
    try:
        _wire(mat, name, textures, factors, uv_map, images)
    except Exception:
        bpy.data.materials.remove(mat)  # the caller removes the images listed in created_images
        raise
    return mat


def _wire(
    mat: bpy.types.Material,
    name: str,
    textures: Mapping[str, bytes],
    factors: Mapping[str, Any],
    uv_map: str,
    images: list[bpy.types.Image],
) -> None:
    if NEEDS_USE_NODES:
        mat.use_nodes = True
    tree = mat.node_tree
    assert tree is not None
    nodes, links = tree.nodes, tree.links
    nodes.clear()

    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (300, 0)
    bsdf: Any = nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.location = (0, 0)
    links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])

    base_factor = tuple(float(x) for x in factors.get("base_color_factor", (1.0, 1.0, 1.0, 1.0)))
    roughness = float(factors.get("roughness_factor", 1.0 if "orm" in textures else 0.5))
    metallic = float(factors.get("metallic_factor", 0.0))
    bsdf.inputs["Base Color"].default_value = base_factor
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic

    def tex_node(kind: str, y: float, non_color: bool) -> Any:
        image = packed_image(texture_name(name, kind), textures[kind], non_color=non_color)
        images.append(image)
        node: Any = nodes.new("ShaderNodeTexImage")
        node.image = image
        node.label = kind.replace("_", " ").title()
        node.location = (-700, y)
        return node

    if textures.get("base_color"):
        node = tex_node("base_color", 300, non_color=False)
        _link_scaled(tree, node.outputs["Color"], bsdf.inputs["Base Color"], base_factor[:3], (-250, 300))

    if textures.get("orm"):
        node = tex_node("orm", 0, non_color=True)
        sep: Any = nodes.new("ShaderNodeSeparateColor")
        sep.location = (-400, 0)
        links.new(node.outputs["Color"], sep.inputs["Color"])
        _link_scalar(tree, sep.outputs["Green"], bsdf.inputs["Roughness"], roughness, (-200, 50))
        _link_scalar(tree, sep.outputs["Blue"], bsdf.inputs["Metallic"], metallic, (-200, -50))
        settings: Any = nodes.new("ShaderNodeGroup")
        settings.node_tree = gltf_output_group()
        settings.location = (0, -450)
        links.new(sep.outputs["Red"], settings.inputs[OCCLUSION_INPUT])

    if textures.get("normal"):
        node = tex_node("normal", -300, non_color=True)
        nmap: Any = nodes.new("ShaderNodeNormalMap")
        nmap.location = (-250, -300)
        nmap.uv_map = uv_map
        nmap.inputs["Strength"].default_value = float(factors.get("normal_scale", 1.0))
        links.new(node.outputs["Color"], nmap.inputs["Color"])
        links.new(nmap.outputs["Normal"], bsdf.inputs["Normal"])


def gltf_output_group() -> Any:
    """The glTF add-on's settings group (shared by every material, as its importer does).

    An existing group of that name without an "Occlusion" input (made by hand) is left alone and
    a new one is made; its ".001" name still starts with the name the exporter looks for.
    """
    group: Any = bpy.data.node_groups.get(GLTF_OUTPUT_GROUP)
    if group is not None and any(
        getattr(item, "in_out", "") == "INPUT" and item.name == OCCLUSION_INPUT for item in group.interface.items_tree
    ):
        return group
    group = bpy.data.node_groups.new(GLTF_OUTPUT_GROUP, "ShaderNodeTree")
    group.interface.new_socket(OCCLUSION_INPUT, in_out="INPUT", socket_type="NodeSocketFloat")
    thickness: Any = group.interface.new_socket("Thickness", in_out="INPUT", socket_type="NodeSocketFloat")
    thickness.default_value = 0.0
    group.nodes.new("NodeGroupOutput")
    group.nodes.new("NodeGroupInput").location = (-200, 0)
    return group


def _link_scalar(tree: Any, src: Any, dst: Any, factor: float, location: tuple[int, int]) -> None:
    """Link directly when the glTF factor is 1 (the common case), else multiply like the glTF importer."""
    if abs(factor - 1.0) < 1e-6:
        tree.links.new(src, dst)
        return
    mul: Any = tree.nodes.new("ShaderNodeMath")
    mul.operation = "MULTIPLY"
    mul.location = location
    mul.inputs[1].default_value = factor
    tree.links.new(src, mul.inputs[0])
    tree.links.new(mul.outputs[0], dst)


def _link_scaled(tree: Any, src: Any, dst: Any, factor: tuple[float, ...], location: tuple[int, int]) -> None:
    if all(abs(f - 1.0) < 1e-6 for f in factor):
        tree.links.new(src, dst)
        return
    mix: Any = tree.nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.blend_type = "MULTIPLY"
    mix.location = location
    mix.inputs["Factor"].default_value = 1.0
    tree.links.new(src, mix.inputs[6])  # A (colour)
    mix.inputs[7].default_value = (*factor[:3], 1.0)  # B (colour)
    tree.links.new(mix.outputs[2], dst)  # Result (colour)

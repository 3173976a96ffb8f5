"""Result arrays -> a Blender object, fast and all-or-nothing.

Meshes are built with the attribute API (``position``, ``.corner_vert``,
``loop_start`` through ``foreach_set``): ~0.2 s for a million triangles where
``from_pydata`` takes ~1.8 s. Every datablock created is tracked and removed
again if anything fails, so the artist never gets a half-built asset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import bpy
import numpy as np

from ..core.meshdata import BlenderMeshArrays, blender_arrays_from_result
from ..core.payload import ResultPayload
from ..protocol.errors import Step1X3DError
from ..protocol.provenance import (
    AI_GENERATED,
    LOD_PROPERTY,
    NOTES_PROPERTY,
    PROVENANCE_PREFIX,
    STAGE_SECONDS,
    property_name,
)
from . import material as material_mod

UV_MAP = "UVMap"
# Blender 4.5 reads a FLOAT_VECTOR "custom_normal" attribute as free custom normals: setting it
# costs ~1 ms per million corners instead of ~1.3 s for normals_split_custom_set_from_vertices,
# which has to build a normal space per corner fan. Older versions need the legacy call.
FREE_NORMALS = bpy.app.version >= (4, 5, 0)


def build_mesh(name: str, arrays: BlenderMeshArrays, *, custom_normals: bool = True) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new(name)
    attrs: Any = mesh.attributes  # AttributeGroup items are untyped (their .data depends on the domain)
    try:
        mesh.vertices.add(arrays.vertex_count)
        mesh.loops.add(arrays.corner_verts.size)
        mesh.polygons.add(arrays.face_count)
        attrs["position"].data.foreach_set("vector", arrays.positions)
        attrs[".corner_vert"].data.foreach_set("value", arrays.corner_verts)
        mesh.polygons.foreach_set("loop_start", arrays.loop_starts)
        if arrays.corner_uvs is not None:
            uv: Any = mesh.uv_layers.new(name=UV_MAP)
            uv.uv.foreach_set("vector", arrays.corner_uvs)
        mesh.update(calc_edges=True)
        if arrays.smooth:
            mesh.shade_smooth()
            # Vertices arrive split at UV seams; without the server's normals smooth shading
            # would show every seam. Custom normals are what the glTF importer sets too.
            if custom_normals and arrays.vertex_normals is not None:
                if FREE_NORMALS:
                    attrs.new("custom_normal", "FLOAT_VECTOR", "POINT").data.foreach_set(
                        "vector", arrays.vertex_normals.ravel()
                    )
                else:  # an (N, 3) float32 array goes through the buffer protocol, no Python lists
                    mesh.normals_split_custom_set_from_vertices(arrays.vertex_normals)  # type: ignore[arg-type]
        else:
            mesh.shade_flat()
    except Exception:
        bpy.data.meshes.remove(mesh)
        raise
    return mesh


@dataclass
class _Created:
    """Datablocks created so far, removed in reverse order if the import fails."""

    objects: list[bpy.types.Object] = field(default_factory=list)
    meshes: list[bpy.types.Mesh] = field(default_factory=list)
    images: list[bpy.types.Image] = field(default_factory=list)
    materials: list[bpy.types.Material] = field(default_factory=list)
    collections: list[bpy.types.Collection] = field(default_factory=list)

    def remove_all(self) -> None:
        data = bpy.data
        pairs: tuple[tuple[list[Any], Any], ...] = (
            (self.objects, data.objects),
            (self.collections, data.collections),
            (self.meshes, data.meshes),
            (self.materials, data.materials),
            (self.images, data.images),
        )
        for blocks, coll in pairs:
            for block in reversed(blocks):
                try:
                    coll.remove(block)
                except (ReferenceError, RuntimeError):
                    pass  # already gone


def set_provenance(obj: bpy.types.ID, provenance: Mapping[str, Any], timings: Mapping[str, float] | None = None) -> None:
    """Provenance as custom properties, one per key of ``protocol/provenance.py`` as in the GLB's
    ``extras`` (the seconds each stage took, ``timings``, as ``stage_seconds``), labelled AI-generated."""
    if timings:
        provenance = {**provenance, STAGE_SECONDS: {str(k): round(float(v), 3) for k, v in timings.items()}}
    obj[property_name(AI_GENERATED)] = True
    for key, value in provenance.items():
        prop = property_name(str(key))
        if isinstance(value, (bool, int, float, str)) and not (isinstance(value, int) and abs(value) >= 2**31):
            obj[prop] = value
        else:  # lists of strings, nested maps, big ints: ID properties cannot hold all of these
            obj[prop] = json.dumps(value, default=str, sort_keys=True)


def import_payload(
    scene: bpy.types.Scene,
    payload: ResultPayload,
    *,
    name: str,
    location: tuple[float, float, float] | None = None,
    custom_normals: bool = True,
    link: bool = True,
) -> bpy.types.Object:
    """Import a result as object ``name`` in a new collection ``name``, at ``location`` (default: 3D cursor).

    ``link=False`` leaves the collection out of the scene (:func:`replace_in_place` takes its parts).
    """
    main_arrays = blender_arrays_from_result(payload.mesh)  # a malformed mesh: Step1X3DError "bad_mesh"
    lod_arrays = [blender_arrays_from_result(m) for m in payload.lods]

    created = _Created()
    try:
        mesh = build_mesh(name, main_arrays, custom_normals=custom_normals)
        created.meshes.append(mesh)
        mat = None
        if payload.textures or payload.material:
            mat = material_mod.build_material(
                name, payload.textures, payload.material, uv_map=UV_MAP, created_images=created.images
            )
            created.materials.append(mat)
            mesh.materials.append(mat)

        collection = bpy.data.collections.new(name)
        created.collections.append(collection)
        obj = bpy.data.objects.new(name, mesh)
        created.objects.append(obj)
        collection.objects.link(obj)
        obj.location = scene.cursor.location.copy() if location is None else location
        set_provenance(obj, payload.provenance, payload.timings)
        if payload.notes:
            obj[NOTES_PROPERTY] = "\n".join(payload.notes)

        for level, arrays in enumerate(lod_arrays, start=1):
            lod_mesh = build_mesh(f"{name}_LOD{level}", arrays, custom_normals=custom_normals)
            created.meshes.append(lod_mesh)
            if mat is not None:
                lod_mesh.materials.append(mat)
            lod = bpy.data.objects.new(f"{name}_LOD{level}", lod_mesh)
            created.objects.append(lod)
            collection.objects.link(lod)
            lod.parent = obj  # moves with the asset; hidden so the viewport shows one level
            lod.hide_viewport = True
            lod.hide_render = True
            lod[LOD_PROPERTY] = level

        # Linked last: until here nothing is visible in the scene.
        if link:
            scene.collection.children.link(collection)
    except Step1X3DError:
        created.remove_all()
        raise
    except Exception as exc:
        created.remove_all()
        raise Step1X3DError(f"Blender could not build the asset: {exc}.", "import_failed") from exc
    return obj


def replace_in_place(scene: bpy.types.Scene, target: bpy.types.Object, payload: ResultPayload) -> bpy.types.Object:
    """Regenerate: ``target`` takes the new mesh, material and LODs; its name, transform, parent,
    collections and modifiers stay. The replaced mesh (and its material and maps, when nothing
    else uses them) is removed, so a regenerate does not pile up orphan data."""
    fresh = import_payload(scene, payload, name=target.name + "_new", link=False)
    collection = fresh.users_collection[0]
    old_mesh: Any = target.data
    old_name = old_mesh.name
    children: list[Any] = list(target.children)
    old_lods = [child for child in children if LOD_PROPERTY in child]
    new_lods: list[Any] = list(fresh.children)
    new_mesh: Any = fresh.data

    target.data = new_mesh
    for key in [k for k in target.keys() if k.startswith(PROVENANCE_PREFIX)]:
        del target[key]
    for key in fresh.keys():
        target[key] = fresh[key]
    for lod in old_lods:  # first, so the new levels can take their names
        lod_mesh = lod.data
        bpy.data.objects.remove(lod)
        if lod_mesh is not None and lod_mesh.users == 0:
            bpy.data.meshes.remove(lod_mesh)
    for level, lod in enumerate(new_lods, start=1):
        lod.parent = target
        collection.objects.unlink(lod)
        for coll in target.users_collection:
            coll.objects.link(lod)
        lod.name = lod.data.name = f"{target.name}_LOD{level}"
    bpy.data.objects.remove(fresh)
    bpy.data.collections.remove(collection)
    _remove_unused_mesh(old_mesh)
    # Names as a fresh import would give them, now that the old ones are free.
    fresh_name = target.name + "_new"
    new_mesh.name = old_name
    for mat in [m for m in new_mesh.materials if m is not None and m.name.startswith(fresh_name)]:
        mat.name = target.name
        for node in mat.node_tree.nodes if mat.node_tree else []:
            image = getattr(node, "image", None)
            if image is not None and image.name.startswith(fresh_name):
                image.name = target.name + image.name[len(fresh_name):]
    return target


def _remove_unused_mesh(mesh: Any) -> None:
    if mesh.users:
        return
    materials = [m for m in mesh.materials if m is not None]
    bpy.data.meshes.remove(mesh)
    for mat in materials:
        if mat.users:
            continue
        images = [n.image for n in mat.node_tree.nodes if n.type == "TEX_IMAGE" and n.image] if mat.node_tree else []
        bpy.data.materials.remove(mat)
        for image in images:
            if not image.users:
                bpy.data.images.remove(image)


def mesh_counts(mesh: bpy.types.Mesh) -> tuple[int, int]:
    """(vertices, faces) of a mesh, for checks and the history."""
    return len(mesh.vertices), len(mesh.polygons)


def corner_uvs(mesh: bpy.types.Mesh) -> np.ndarray:
    """The active UV map as a (corners, 2) float32 array."""
    layer = mesh.uv_layers.active
    out = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    if layer is not None:
        layer.uv.foreach_get("vector", out)
    return out.reshape(-1, 2)

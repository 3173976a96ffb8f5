"""Retexture: the selected object's evaluated mesh out, a new material back in.

The mesh sent is what the artist sees (modifiers applied), triangulated, in the
object's local frame, with its active UV map so the server paints into the
artist's own layout. The object itself is never replaced: its name, transform,
modifiers and mesh stay; only the material changes.
"""

from __future__ import annotations

from typing import Any

import bpy
import numpy as np

from ..core.clientmesh import client_mesh_payload
from .references import InputError


def check_target(obj: bpy.types.Object | None) -> bpy.types.Object:
    if obj is None:
        raise InputError("Select a mesh object to retexture.")
    if obj.type != "MESH":
        raise InputError(f"'{obj.name}' is not a mesh; select a mesh object to retexture.")
    return obj


def ensure_uv_map(context: bpy.types.Context, obj: bpy.types.Object) -> tuple[str, bool]:
    """The object's active UV map name, and whether it was added now (Smart UV Project).

    The texture is painted into these UVs, so they must exist before the mesh is sent. An added
    map is removed again by :func:`remove_uv_map` when the job fails or is cancelled; the mesh's
    selection, which Smart UV Project needs to change, is put back at once.
    """
    mesh: Any = obj.data
    if mesh.uv_layers.active is not None:
        return str(mesh.uv_layers.active.name), False
    selection = _selection(mesh)
    layer = mesh.uv_layers.new(name="UVMap")
    mesh.uv_layers.active = layer
    name = str(layer.name)
    view_layer: Any = context.view_layer
    prev_active = view_layer.objects.active
    prev_mode = obj.mode
    try:
        with context.temp_override(active_object=obj, object=obj, selected_objects=[obj],
                                   selected_editable_objects=[obj]):
            view_layer.objects.active = obj
            bpy.ops.object.mode_set(mode="EDIT")
            bpy.ops.mesh.select_all(action="SELECT")
            bpy.ops.uv.smart_project(island_margin=0.02)
            bpy.ops.object.mode_set(mode=prev_mode if prev_mode != "EDIT" else "OBJECT")
    except RuntimeError as exc:
        remove_uv_map(obj, name)
        raise InputError(f"'{obj.name}' has no UV map and Smart UV Project failed: {exc}") from None
    finally:
        view_layer.objects.active = prev_active
        _restore_selection(mesh, selection)
    return name, True


def remove_uv_map(obj: bpy.types.Object | None, name: str) -> bool:
    """Undo :func:`ensure_uv_map`'s addition (a failed or cancelled job); True when one was removed."""
    mesh: Any = obj.data if obj is not None and obj.type == "MESH" else None
    if mesh is None:
        return False
    layer = mesh.uv_layers.get(name)
    if layer is None:
        return False
    mesh.uv_layers.remove(layer)
    return True


_SELECT_DOMAINS = ("vertices", "edges", "polygons")


def _selection(mesh: Any) -> dict[str, np.ndarray]:
    out = {}
    for domain in _SELECT_DOMAINS:
        items = getattr(mesh, domain)
        flags = np.empty(len(items), dtype=bool)
        items.foreach_get("select", flags)
        out[domain] = flags
    return out


def _restore_selection(mesh: Any, selection: dict[str, np.ndarray]) -> None:
    for domain, flags in selection.items():
        items = getattr(mesh, domain)
        if len(items) == len(flags):
            items.foreach_set("select", flags)


def extract_mesh(context: bpy.types.Context, obj: bpy.types.Object) -> dict[str, Any]:
    """Evaluated, triangulated mesh in local coordinates as a wire mesh (glTF frame)."""
    depsgraph = context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh: Any = evaluated.to_mesh()  # attribute .data is untyped in the stubs
    try:
        if mesh is None or len(mesh.polygons) == 0:
            raise InputError(f"'{obj.name}' has no faces to texture.")
        mesh.calc_loop_triangles()
        n_verts, n_loops, n_tris = len(mesh.vertices), len(mesh.loops), len(mesh.loop_triangles)
        positions = np.empty(n_verts * 3, dtype=np.float32)
        mesh.attributes["position"].data.foreach_get("vector", positions)
        corner_verts = np.empty(n_loops, dtype=np.int32)
        mesh.attributes[".corner_vert"].data.foreach_get("value", corner_verts)
        tri_loops = np.empty(n_tris * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("loops", tri_loops)
        uvs = None
        if mesh.uv_layers.active is not None:
            uvs = np.empty(n_loops * 2, dtype=np.float32)
            mesh.uv_layers.active.uv.foreach_get("vector", uvs)
    finally:
        evaluated.to_mesh_clear()
    return client_mesh_payload(positions, corner_verts, tri_loops, uvs)


def uvs_match(sent: dict[str, Any], received: dict[str, Any]) -> bool:
    """True when the server painted into the UVs we sent (it re-unwraps layouts it cannot use)."""
    if received.get("uvs") is None or sent.get("uvs") is None:
        return False
    a, b = np.asarray(sent["uvs"]), np.asarray(received["uvs"])
    fa, fb = np.asarray(sent["faces"]), np.asarray(received["faces"])
    if a.shape != b.shape or fa.shape != fb.shape:
        return False
    return bool(np.allclose(a, b, atol=1e-4) and np.array_equal(fa, fb))


def apply_material(obj: bpy.types.Object, material: bpy.types.Material) -> None:
    """Put ``material`` in every slot (keeps per-face slot indices valid), or add the first slot."""
    if len(obj.material_slots) == 0:
        obj.data.materials.append(material)  # type: ignore[union-attr]
        return
    for slot in obj.material_slots:
        slot.material = material

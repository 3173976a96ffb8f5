"""Import a GLB with Blender's own glTF importer (bpy) and print what came through as JSON.

Run as a separate process (``python tests/tools/blender_import_glb.py file.glb``):
bpy is heavy and keeps global state, so tests never import it in-process.
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.import_scene.gltf(filepath=path)
    objects = []
    for obj in bpy.data.objects:
        entry = {"name": obj.name, "type": obj.type,
                 "props": {k: _plain(obj[k]) for k in obj.keys() if not k.startswith("_")}}
        if obj.type == "MESH":
            mesh = obj.data
            entry.update(vertices=len(mesh.vertices), polygons=len(mesh.polygons),
                         uv_layers=[uv.name for uv in mesh.uv_layers],
                         materials=[m.name for m in mesh.materials if m is not None])
        objects.append(entry)
    materials = []
    for mat in bpy.data.materials:
        links = []
        if mat.node_tree is not None:
            links = sorted(f"{l.from_node.bl_idname}.{l.from_socket.name}->{l.to_node.bl_idname}.{l.to_socket.name}"
                           for l in mat.node_tree.links)
        materials.append({"name": mat.name, "links": links})
    images = [{"name": im.name, "size": list(im.size), "packed": im.packed_file is not None} for im in bpy.data.images]
    print("@@JSON@@" + json.dumps({"result": sorted(result), "objects": objects, "materials": materials, "images": images}))


def _plain(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "to_list"):
        return value.to_list()
    return value if isinstance(value, (str, int, float, bool)) else str(value)


if __name__ == "__main__":
    main(sys.argv[1])

"""Read an FBX back the two ways that matter, print JSON: the file's own records and Blender's re-import.

Run as a separate process (``python tests/tools/blender_fbx_check.py file.fbx``): bpy is
heavy and keeps global state, so tests never import it in-process.

- file: GlobalSettings (UpAxis, FrontAxis, UnitScaleFactor), the raw vertex bounds
  along each file axis, embedded texture files (Video records with content);
- import: ``bpy.ops.import_scene.fbx`` with its defaults (it converts axes and units to
  Blender's metres, Z up): object dimensions, what feeds each Principled input, and
  mean channel values of the image feeding Metallic.
"""

from __future__ import annotations

import json
import sys


def _file_records(path: str) -> dict:
    import numpy as np
    from io_scene_fbx import parse_fbx

    root, _version = parse_fbx.parse(path)

    def find(elem, name):  # type: ignore[no-untyped-def]
        return [e for e in elem.elems if e.id == name]

    settings = {}
    for gs in find(root, b"GlobalSettings"):
        for props in find(gs, b"Properties70"):
            for p in props.elems:
                key = p.props[0].decode()
                if key in ("UpAxis", "UpAxisSign", "FrontAxis", "FrontAxisSign", "UnitScaleFactor"):
                    settings[key] = p.props[-1]
    bounds, videos = [], []
    for objects in find(root, b"Objects"):
        for geom in find(objects, b"Geometry"):
            for verts in find(geom, b"Vertices"):
                v = np.asarray(verts.props[0], dtype=np.float64).reshape(-1, 3)
                bounds.append({"min": v.min(0).tolist(), "max": v.max(0).tolist()})
        for video in find(objects, b"Video"):
            content = find(video, b"Content")
            names = find(video, b"RelativeFilename")
            videos.append({"file": names[0].props[0].decode() if names else "",
                           "bytes": len(content[0].props[0]) if content and content[0].props else 0})
    return {"settings": settings, "bounds": bounds, "videos": videos}


def _feeds(mat) -> dict:  # type: ignore[no-untyped-def]
    out = {}
    for node in mat.node_tree.nodes:
        if node.bl_idname != "ShaderNodeBsdfPrincipled":
            continue
        for name in ("Base Color", "Metallic", "Roughness", "Normal"):
            socket = node.inputs[name]
            if socket.is_linked:
                src = socket.links[0].from_node
                image = getattr(src, "image", None)
                if src.bl_idname == "ShaderNodeNormalMap" and src.inputs["Color"].is_linked:
                    image = src.inputs["Color"].links[0].from_node.image
                out[name] = {"node": src.bl_idname, "image": image.name if image else None,
                             "size": list(image.size) if image else None}
    return out


def main(path: str) -> None:
    import bpy
    import numpy as np

    bpy.ops.wm.read_factory_settings(use_empty=True)
    report = {"file": _file_records(path)}
    bpy.ops.import_scene.fbx(filepath=path)
    objects = []
    for obj in bpy.data.objects:
        if obj.type != "MESH":
            continue
        bpy.context.view_layer.update()
        objects.append({"name": obj.name, "dimensions": list(obj.dimensions),
                        "rotation": list(obj.rotation_euler), "scale": list(obj.scale),
                        "props": {k: str(obj[k]) for k in obj.keys() if not k.startswith("_")},
                        "materials": [{"name": m.name, "feeds": _feeds(m)} for m in obj.data.materials if m]})
    metallic = {}
    for mat in bpy.data.materials:
        for node in mat.node_tree.nodes if mat.node_tree else []:
            if node.bl_idname == "ShaderNodeBsdfPrincipled" and node.inputs["Metallic"].is_linked:
                image = getattr(node.inputs["Metallic"].links[0].from_node, "image", None)
                if image is not None:
                    w, h = image.size
                    px = np.empty(w * h * image.channels, np.float32)
                    image.pixels.foreach_get(px)
                    metallic = {"channels": image.channels,
                                "mean": px.reshape(-1, image.channels).mean(0).tolist()}
    report["objects"] = objects
    report["metallic_image"] = metallic
    print("@@JSON@@" + json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])

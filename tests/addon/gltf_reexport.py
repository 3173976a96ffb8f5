"""Run in a fresh process by test_blender.py: open a saved .blend and export one object with Blender's
own glTF exporter (what an artist does with File > Export > glTF 2.0).

    python tests/addon/gltf_reexport.py scene.blend OBJECT out.gltf

A separate process because the bpy 4.2 module crashes at interpreter exit after any glTF export
(a plain cube does it too); the caller checks the written file, not this process's exit status.
"""

from __future__ import annotations

import sys


def main(blend: str, name: str, out: str) -> None:
    import bpy  # noqa: I001 - first: it puts Blender's script modules (addon_utils) on sys.path
    import addon_utils

    bpy.ops.wm.open_mainfile(filepath=blend)
    addon_utils.enable("io_scene_gltf2", default_set=False)
    for obj in bpy.data.objects:
        obj.select_set(obj.name == name)
    bpy.ops.export_scene.gltf(filepath=out, export_format="GLTF_SEPARATE", use_selection=True)
    print("EXPORTED", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])

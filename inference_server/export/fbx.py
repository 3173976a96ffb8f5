"""FBX for Unity/Unreal through Blender's own exporter (the ``bpy`` module).

The asset goes in as a GLB through Blender's glTF importer (the same material wiring the
add-on builds), then ``blender_addon.blender.engine_export`` writes the FBX with the
engine's axes, units and packed maps, exactly as the add-on's "Export for ..." buttons do.
Runs in this process: bpy is a module here, and the scene is reset first.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from blender_addon.protocol.errors import Step1X3DError

from ..assets import Asset
from .glb import asset_to_glb


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Blender's importer and exporter print progress on stdout (C and Python); the CLI prints its own line."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def write_fbx(asset: Asset, path: Path, *, engine: str = "unity") -> list[Path]:
    """Write ``path`` for ``engine`` (unity or unreal) and its packed maps beside it; return the files."""
    try:
        import bpy
    except ImportError:
        raise Step1X3DError("writing FBX needs Blender's Python module (pip install bpy, on Python 3.11); "
                            "or export from Blender with the add-on's Export for Unity/Unreal",
                            "not_installed") from None
    from blender_addon.blender.engine_export import export_fbx
    from blender_addon.core.engines import preset

    preset(engine)  # an unknown engine fails before the scene is touched
    with _quiet_stdout(), tempfile.TemporaryDirectory(prefix="step1x3d-fbx-") as work:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        glb = Path(work) / f"{Path(path).stem or 'asset'}.glb"
        glb.write_bytes(asset_to_glb(Asset(mesh=asset.mesh, material=asset.material, provenance=asset.provenance)))
        if "FINISHED" not in bpy.ops.import_scene.gltf(filepath=str(glb)):
            raise Step1X3DError("Blender could not read the asset back for the FBX export", "export_failed")
        scene: Any = bpy.context.scene
        objects = [o for o in scene.objects if o.type == "MESH"]
        return export_fbx(objects, Path(path), engine)  # EngineExportError is a Step1X3DError: one sentence


__all__ = ["write_fbx"]

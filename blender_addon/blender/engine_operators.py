"""The "Export for Unity" / "Export for Unreal" operators: selected meshes -> FBX with the engine's preset."""

from __future__ import annotations

from typing import Any, Literal

import bpy
from bpy.props import StringProperty
from bpy_extras.io_utils import ExportHelper

from ..core.engines import preset
from .engine_export import EngineExportError, export_fbx

Result = set[Literal["RUNNING_MODAL", "CANCELLED", "FINISHED", "PASS_THROUGH", "INTERFACE"]]


class _EngineExport(ExportHelper):
    engine = "unity"
    filename_ext = ".fbx"
    filter_glob: StringProperty(default="*.fbx", options={"HIDDEN"})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: Any) -> bool:
        return any(o.type == "MESH" for o in context.selected_objects)

    def execute(self, context: Any) -> Result:
        op: Any = self  # an Operator at run time (the concrete classes below); the mixin alone is not
        try:
            written = export_fbx(list(context.selected_objects), op.filepath, self.engine)
        except (EngineExportError, OSError, ValueError) as exc:
            op.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        op.report({"INFO"}, f"Exported for {preset(self.engine).label}: {len(written)} files")
        return {"FINISHED"}


class STEP1X3D_OT_export_unity(_EngineExport, bpy.types.Operator):  # type: ignore[misc]
    """Export the selected meshes as FBX for Unity: metres, Y up, metallic map with smoothness in alpha"""

    bl_idname = "step1x3d.export_unity"
    bl_label = "Export for Unity"
    engine = "unity"


class STEP1X3D_OT_export_unreal(_EngineExport, bpy.types.Operator):  # type: ignore[misc]
    """Export the selected meshes as FBX for Unreal: centimetres, Z up, ORM map"""

    bl_idname = "step1x3d.export_unreal"
    bl_label = "Export for Unreal"
    engine = "unreal"


CLASSES: tuple[type, ...] = (STEP1X3D_OT_export_unity, STEP1X3D_OT_export_unreal)

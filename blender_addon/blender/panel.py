"""View3D > Sidebar > Step1X-3D."""

from __future__ import annotations

from typing import Any

import bpy

from . import runtime
from .properties import VIEW_NAMES, state

CATEGORY = "Step1X-3D"
HISTORY_ROWS = 8


class STEP1X3D_UL_references(bpy.types.UIList):
    bl_idname = "STEP1X3D_UL_references"

    def draw_item(self, context: Any, layout: Any, data: Any, item: Any, icon: Any, active_data: Any,
                  active_propname: Any, index: int = 0, flt_flag: int = 0) -> None:
        row = layout.row(align=True)
        view = VIEW_NAMES[index] if index < len(VIEW_NAMES) else f"View {index + 1}"
        row.label(text=view)
        row.prop(item, "source", text="")
        if item.source == "IMAGE":
            row.prop_search(item, "image_name", bpy.data, "images", text="")
        else:
            row.prop(item, "filepath", text="")


class _Base:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


class STEP1X3D_PT_main(_Base, bpy.types.Panel):
    bl_label = "Step1X-3D"
    bl_idname = "STEP1X3D_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        st = state(context)
        layout = self.layout

        row = layout.row(align=True)
        row.label(text=st.server_line, icon="CHECKMARK" if st.server_online else "ERROR")
        row.operator("step1x3d.refresh_status", text="", icon="FILE_REFRESH")
        if not st.server_online:
            row.operator("step1x3d.start_server", text="", icon="PLAY")

        layout.label(text="Reference Images (first: front)")
        row = layout.row()
        row.template_list(STEP1X3D_UL_references.bl_idname, "", st, "references", st, "reference_index", rows=3)
        col = row.column(align=True)
        col.operator("step1x3d.reference_add", text="", icon="FILEBROWSER")
        col.operator("step1x3d.reference_add_image", text="", icon="IMAGE_DATA")
        col.operator("step1x3d.reference_remove", text="", icon="REMOVE")
        col.separator()
        col.operator("step1x3d.reference_move", text="", icon="TRIA_UP").direction = "UP"  # type: ignore[attr-defined]
        col.operator("step1x3d.reference_move", text="", icon="TRIA_DOWN").direction = "DOWN"  # type: ignore[attr-defined]

        layout.prop(st, "mode", text="")
        job = runtime.active_job()
        if job is None:
            row = layout.row()
            row.scale_y = 1.4
            if st.mode == "texture":
                row.operator("step1x3d.retexture", text="Retexture Selected", icon="TEXTURE")
            else:
                row.operator("step1x3d.generate", text="Generate", icon="MESH_MONKEY")
        else:
            layout.progress(factor=st.job_fraction, type="BAR", text=st.job_text)
            layout.operator("step1x3d.cancel", icon="CANCEL")
        if st.last_message and job is None:
            box = layout.box()
            icon = "ERROR" if st.last_failed else "INFO"
            for i, line in enumerate(_wrap(st.last_message, 48)):
                box.label(text=line, icon=icon if i == 0 else "BLANK1")


class STEP1X3D_PT_settings(_Base, bpy.types.Panel):
    bl_label = "Settings"
    bl_parent_id = "STEP1X3D_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        st = state(context)
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        row = layout.row(align=True)
        row.prop(st, "preset", text="Preset")
        row.operator("step1x3d.preset_apply", text="", icon="CHECKMARK")
        row.operator("step1x3d.preset_delete", text="", icon="TRASH")
        row = layout.row(align=True)
        row.prop(st, "preset_name", text="Save As")
        row.operator("step1x3d.preset_save", text="", icon="ADD")

        row = layout.row(align=True)
        row.prop(st, "seed")
        row.prop(st, "randomize_seed", text="", icon="FILE_REFRESH")
        col = layout.column(align=True)
        col.prop(st, "steps")
        col.prop(st, "guidance")
        col = layout.column(align=True)
        col.prop(st, "max_faces")
        col.prop(st, "lod_levels")
        col.prop(st, "texture_size")
        layout.prop(st, "inflate_depth")


class STEP1X3D_PT_history(_Base, bpy.types.Panel):
    bl_label = "History"
    bl_parent_id = "STEP1X3D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        entries = runtime.history_entries()
        if not entries:
            layout.label(text="No jobs yet.")
            return
        for entry in entries[:HISTORY_ROWS]:
            row = layout.row(align=True)
            row.label(text=entry.label(), icon="CHECKMARK" if entry.state == "done" else "X")
            sub = row.row(align=True)
            sub.enabled = bool(entry.result_dir)
            sub.operator("step1x3d.reimport", text="", icon="IMPORT").job_id = entry.job_id  # type: ignore[attr-defined]
        layout.operator("step1x3d.history_clear", icon="TRASH")


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return lines


CLASSES: tuple[type, ...] = (STEP1X3D_UL_references, STEP1X3D_PT_main, STEP1X3D_PT_settings, STEP1X3D_PT_history)

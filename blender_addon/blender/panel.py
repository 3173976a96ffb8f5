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

    def draw_item(self, context: bpy.types.Context | None, layout: bpy.types.UILayout, data: Any | None,
                  item: Any | None, icon: int | None, active_data: Any, active_property: str | None,
                  index: int | None = 0, flt_flag: int | None = 0) -> None:
        index = index or 0
        ref: Any = item  # a STEP1X3D_PG_reference
        row: Any = layout.row(align=True)
        view = VIEW_NAMES[index] if index < len(VIEW_NAMES) else f"View {index + 1}"
        row.label(text=view)
        row.prop(ref, "source", text="")
        if ref.source == "IMAGE":
            row.prop_search(ref, "image_name", bpy.data, "images", text="")
        else:
            row.prop(ref, "filepath", text="")


class STEP1X3D_PT_main(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY
    bl_label = "Step1X-3D"
    bl_idname = "STEP1X3D_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        st = state(context)
        layout: Any = self.layout  # UI calls take many literal enums; the stubs make every one Optional

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
        col.operator("step1x3d.reference_move", text="", icon="TRIA_UP").direction = "UP"
        col.operator("step1x3d.reference_move", text="", icon="TRIA_DOWN").direction = "DOWN"

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


class STEP1X3D_PT_settings(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY
    bl_label = "Settings"
    bl_parent_id = "STEP1X3D_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        st = state(context)
        layout: Any = self.layout
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


class STEP1X3D_PT_history(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY
    bl_label = "History"
    bl_parent_id = "STEP1X3D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout: Any = self.layout
        entries = runtime.history_entries()
        if not entries:
            layout.label(text="No jobs yet.")
            return
        for entry in entries[:HISTORY_ROWS]:
            row = layout.row(align=True)
            row.label(text=entry.label(), icon="CHECKMARK" if entry.state == "done" else "X")
            sub = row.row(align=True)
            sub.enabled = bool(entry.result_dir)
            sub.operator("step1x3d.reimport", text="", icon="IMPORT").job_id = entry.job_id
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

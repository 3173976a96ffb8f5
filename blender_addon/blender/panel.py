"""View3D > Sidebar > Step1X-3D."""

from __future__ import annotations

import os
from typing import Any

import bpy

from ..core.provenance_line import provenance_line
from ..core.views import VIEW_ORDER, view_label
from ..protocol.provenance import LOD_PROPERTY
from . import options_ui, previews, runtime
from .references import slot_filled
from .properties import state

CATEGORY = "Step1X-3D"
HISTORY_ROWS = 6


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
        row.operator("step1x3d.free_vram", text="", icon="MEMORY")
        if st.vram_line:
            row = layout.row(align=True)
            row.label(text=st.vram_line, icon="ERROR" if st.vram_failed else "INFO")
            if runtime.vram_pending():
                row.operator("step1x3d.free_vram_cancel", text="", icon="CANCEL")

        draw_view_slots(layout, st)

        layout.prop(st, "mode", text="")
        job = runtime.active_job()
        if job is None:
            row = layout.row()
            row.scale_y = 1.4
            if st.mode == "texture":
                row.operator("step1x3d.retexture", text="Retexture Selected", icon="TEXTURE")
            else:
                row.operator("step1x3d.generate", text="Generate", icon="MESH_MONKEY")
            row = layout.row(align=True)
            row.operator("step1x3d.regenerate", text="Regenerate", icon="FILE_REFRESH")
            row.operator("step1x3d.variations", text="Variations", icon="DUPLICATE")
            row.prop(st, "variation_count", text="")
        else:
            layout.progress(factor=st.job_fraction, type="BAR", text=st.job_text)
            layout.operator("step1x3d.cancel", icon="CANCEL")
        if st.last_message and job is None:
            box = layout.box()
            icon = "ERROR" if st.last_failed else "INFO"
            for i, line in enumerate(_wrap(st.last_message, 48)):
                box.label(text=line, icon=icon if i == 0 else "BLANK1")
        draw_provenance(layout, context.active_object)
        draw_export_box(layout, context.active_object)


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
        row = layout.row(align=True, heading="Size")
        row.prop(st, "use_size", text="")
        sub = row.row(align=True)
        sub.enabled = st.use_size
        sub.prop(st, "size", text="")
        # The active backend's own options, as its welcome declared them (none before a status check).
        options_ui.draw(layout.column(align=True), context.window_manager)


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
            draw_history_entry(layout.box(), entry)
        layout.operator("step1x3d.history_clear", icon="TRASH")


def draw_history_entry(box: Any, entry: Any) -> None:
    """One gallery card: the result's base colour map and its front reference as thumbnails, then
    re-import and reuse (settings and kept references back into the panel)."""
    row = box.row(align=True)
    row.label(text=entry.label(), icon="CHECKMARK" if entry.state == "done" else "X")
    thumbs = box.row(align=True)
    result_map = os.path.join(entry.result_dir, "base_color.png") if entry.result_dir else ""
    for path in (result_map, entry.reference_files[0] if entry.reference_files else ""):
        if path and os.path.isfile(path):
            thumbs.template_icon(icon_value=previews.file_icon(path), scale=3.0)
    buttons = box.row(align=True)
    sub = buttons.row(align=True)
    sub.enabled = bool(entry.result_dir)
    sub.operator("step1x3d.reimport", text="Re-import", icon="IMPORT").job_id = entry.job_id
    buttons.operator("step1x3d.history_reuse", text="Reuse", icon="RECOVER_LAST").job_id = entry.job_id


def draw_provenance(layout: Any, obj: Any) -> None:
    """One line on what the active result (or the asset an LOD belongs to) inferred rather than saw."""
    line = provenance_line(our_properties(obj))
    if line:
        layout.label(text=line, icon="INFO")


def draw_export_box(layout: Any, obj: Any) -> None:
    """The engine FBX presets, usable when the active object is a mesh (they export the selected meshes)."""
    box = layout.box()
    box.label(text="Export", icon="EXPORT")
    row = box.row(align=True)
    row.enabled = obj is not None and obj.type == "MESH"
    row.operator("step1x3d.export_unity", text="Unity")
    row.operator("step1x3d.export_unreal", text="Unreal")


def our_properties(obj: Any) -> dict[str, Any]:
    """The active object's custom properties as a plain map ({} for none); an LOD child reads its asset's."""
    if obj is None:
        return {}
    if LOD_PROPERTY in obj and obj.parent is not None:
        obj = obj.parent
    return {key: obj[key] for key in obj.keys()}


def draw_view_slots(layout: Any, st: Any) -> None:
    """Four labelled slots (front required), each with a thumbnail; hover a view name for its camera."""
    header = layout.row(align=True)
    header.label(text="Reference Views")
    header.operator("step1x3d.reference_add", text="", icon="FILEBROWSER")
    grid = layout.grid_flow(row_major=True, columns=2, even_columns=True, align=True)
    for view in VIEW_ORDER:
        slot = getattr(st, view)
        box = grid.box()
        row = box.row(align=True)
        label = view_label(view) + (" *" if view == "front" else "")
        row.operator("step1x3d.reference_pick", text=label, icon="FILEBROWSER", emboss=False).view = view
        row.prop(slot, "source", text="", icon_only=True)
        row.operator("step1x3d.reference_clear", text="", icon="X", emboss=False).view = view
        if slot_filled(slot):
            box.template_icon(icon_value=previews.slot_icon(slot), scale=4.0)
        else:
            box.label(text="(empty)" if view != "front" else "(required)", icon="IMAGE_DATA")
        if slot.source == "IMAGE":
            box.prop_search(slot, "image_name", bpy.data, "images", text="")
        else:
            box.prop(slot, "filepath", text="")


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


CLASSES: tuple[type, ...] = (STEP1X3D_PT_main, STEP1X3D_PT_settings, STEP1X3D_PT_history)

"""Panel, list and preferences drawing, headless: a recording layout checks every name we pass to Blender.

bpy as a module has no window, so the panels cannot be drawn for real. The fake
layout below asserts what Blender would: properties exist on their data,
operators are registered, icons are valid icon names.
"""

from __future__ import annotations

from typing import Any


class FakeLayout:
    def __init__(self, bpy: Any, calls: list[str]) -> None:
        self._bpy = bpy
        self.calls = calls
        self.use_property_split = False
        self.use_property_decorate = True
        self.enabled = True
        self.scale_y = 1.0
        icons = bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items
        self._icons = {item.identifier for item in icons}

    def _child(self) -> FakeLayout:
        return FakeLayout(self._bpy, self.calls)

    def _icon(self, icon: str | None) -> None:
        assert icon is None or icon in self._icons, f"unknown icon {icon!r}"

    def row(self, **_: Any) -> FakeLayout:
        return self._child()

    column = box = row

    def separator(self, **_: Any) -> None:
        pass

    def label(self, *, text: str = "", icon: str | None = None) -> None:
        self._icon(icon)
        self.calls.append(f"label:{text}")

    def prop(self, data: Any, name: str, *, text: str | None = None, icon: str | None = None, **_: Any) -> None:
        self._icon(icon)
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self.calls.append(f"prop:{name}")

    def prop_search(self, data: Any, name: str, search_data: Any, search_name: str, **_: Any) -> None:
        assert name in data.bl_rna.properties and hasattr(search_data, search_name)
        self.calls.append(f"prop_search:{name}")

    def operator(self, idname: str, *, text: str = "", icon: str | None = None) -> Any:
        self._icon(icon)
        module, name = idname.split(".")
        op = getattr(getattr(self._bpy.ops, module), name)
        op.get_rna_type()  # raises when the operator is not registered
        self.calls.append(f"operator:{idname}")

        class Props:
            pass

        return Props()

    def template_list(self, listtype: str, list_id: str, data: Any, prop: str, active_data: Any, active_prop: str,
                      **_: Any) -> None:
        assert hasattr(self._bpy.types, listtype)
        assert prop in data.bl_rna.properties and active_prop in active_data.bl_rna.properties
        self.calls.append(f"list:{prop}")

    def progress(self, *, factor: float, type: str, text: str) -> None:
        assert 0.0 <= factor <= 1.0 and type in ("BAR", "RING")
        self.calls.append(f"progress:{text}")


class Stand:
    """Stands in for an RNA instance (which Python cannot create): a layout, other reads delegated."""

    def __init__(self, layout: FakeLayout, wrapped: Any = None) -> None:
        self.layout = layout
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


def _draw(bpy: Any, cls: Any, context: Any) -> list[str]:
    calls: list[str] = []
    cls.draw(Stand(FakeLayout(bpy, calls)), context)
    return calls


def test_panels_draw_with_valid_names(bpy: Any, addon: Any) -> None:
    from blender_addon.blender import panel

    st = bpy.context.window_manager.step1x3d
    st.last_message, st.last_failed = "No Step1X-3D server answers at tcp://127.0.0.1:5555: start one.", True
    main = _draw(bpy, panel.STEP1X3D_PT_main, bpy.context)
    assert "operator:step1x3d.generate" in main and "list:references" in main
    assert any(c.startswith("label:No Step1X-3D") for c in main)
    st.mode = "texture"
    assert "operator:step1x3d.retexture" in _draw(bpy, panel.STEP1X3D_PT_main, bpy.context)
    settings = _draw(bpy, panel.STEP1X3D_PT_settings, bpy.context)
    assert {"prop:seed", "prop:steps", "prop:guidance", "prop:max_faces", "prop:texture_size",
            "prop:inflate_depth", "prop:lod_levels", "prop:preset"} <= set(settings)
    assert bpy.ops.step1x3d.history_clear() == {"FINISHED"}
    assert "label:No jobs yet." in _draw(bpy, panel.STEP1X3D_PT_history, bpy.context)

    from blender_addon.blender.preferences import user_dir
    from blender_addon.core.history import History, HistoryEntry

    History(user_dir()).add(HistoryEntry(job_id="j1", name="chair", mode="full", state="done", result_dir="/x"))
    history = _draw(bpy, panel.STEP1X3D_PT_history, bpy.context)
    assert "operator:step1x3d.reimport" in history and any("chair" in c for c in history)


def test_reference_list_and_preferences_draw(bpy: Any, addon: Any) -> None:
    from blender_addon.blender import panel, preferences

    st = bpy.context.window_manager.step1x3d
    for source in ("FILE", "IMAGE"):
        item = st.references.add()
        item.source = source
    calls: list[str] = []
    ui_list = Stand(FakeLayout(bpy, []))
    for index, item in enumerate(st.references):
        panel.STEP1X3D_UL_references.draw_item(ui_list, bpy.context, FakeLayout(bpy, calls), st, item, 0, st,
                                               "reference_index", index)
    assert calls == ["label:Front", "prop:source", "prop:filepath", "label:Right", "prop:source",
                     "prop_search:image_name"]

    prefs_calls: list[str] = []
    preferences.STEP1X3D_AP_preferences.draw(Stand(FakeLayout(bpy, prefs_calls), addon), bpy.context)
    assert "prop:server_address" in prefs_calls and "prop:curve_server_key_file" in prefs_calls


def test_presets_apply_and_save_from_the_panel(bpy: Any, addon: Any) -> None:
    st = bpy.context.window_manager.step1x3d
    st.preset = "Draft"
    assert bpy.ops.step1x3d.preset_apply() == {"FINISHED"}
    assert (st.steps, st.max_faces, st.texture_size) == (15, 20_000, "1024")
    st.steps, st.preset_name = 33, "Mine"
    assert bpy.ops.step1x3d.preset_save() == {"FINISHED"}
    st.steps = 50
    st.preset = "Mine"
    assert bpy.ops.step1x3d.preset_apply() == {"FINISHED"} and st.steps == 33
    assert bpy.ops.step1x3d.preset_delete() == {"FINISHED"}


def test_reference_slots_add_move_remove(bpy: Any, addon: Any, tmp_path: Any) -> None:
    st = bpy.context.window_manager.step1x3d
    st.references.clear()
    bpy.ops.step1x3d.reference_add(directory=str(tmp_path), files=[{"name": "front.png"}, {"name": "side.png"}])
    assert [r.filepath for r in st.references] == [str(tmp_path / "front.png"), str(tmp_path / "side.png")]
    bpy.ops.step1x3d.reference_move(direction="UP")
    assert st.references[0].filepath.endswith("side.png") and st.reference_index == 0
    bpy.ops.step1x3d.reference_remove()
    assert len(st.references) == 1

"""Panel, list and preferences drawing, headless: a recording layout checks every name we pass to Blender.

bpy as a module has no window, so the panels cannot be drawn for real. The fake
layout below asserts what Blender would: properties exist on their data,
operators are registered, icons are valid icon names.
"""

from __future__ import annotations

from typing import Any

import pytest


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

    def operator(self, idname: str, *, text: str = "", icon: str | None = None, **_: Any) -> Any:
        self._icon(icon)
        module, name = idname.split(".")
        op = getattr(getattr(self._bpy.ops, module), name)
        rna = op.get_rna_type()  # raises when the operator is not registered
        self.calls.append(f"operator:{idname}" + (f":{text}" if text else ""))
        calls = self.calls

        class Props:
            def __setattr__(self, key: str, value: Any) -> None:
                assert key in rna.properties, f"{idname} has no property {key!r}"
                calls.append(f"  {key}={value}")

        return Props()

    def grid_flow(self, **_: Any) -> FakeLayout:
        return self._child()

    def template_icon(self, *, icon_value: int, scale: float = 1.0) -> None:
        assert isinstance(icon_value, int) and icon_value >= 0
        self.calls.append(f"icon:{icon_value}")

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


def _loaded_thumbnails(previews: Any) -> list[str]:
    """The keys of the thumbnails the add-on holds (its private collection: what unregister must free)."""
    return [] if previews._collection is None else list(previews._collection.keys())


def _draw(bpy: Any, cls: Any, context: Any) -> list[str]:
    calls: list[str] = []
    cls.draw(Stand(FakeLayout(bpy, calls)), context)
    return calls


def test_panels_draw_with_valid_names(bpy: Any, addon: Any) -> None:
    from blender_addon.blender import panel

    st = bpy.context.window_manager.step1x3d
    st.last_message, st.last_failed = "No Step1X-3D server answers at tcp://127.0.0.1:5555: start one.", True
    main = _draw(bpy, panel.STEP1X3D_PT_main, bpy.context)
    assert "operator:step1x3d.generate:Generate" in main
    assert [c for c in main if c.startswith("operator:step1x3d.reference_pick")] == [
        "operator:step1x3d.reference_pick:Front *", "operator:step1x3d.reference_pick:Right",
        "operator:step1x3d.reference_pick:Back", "operator:step1x3d.reference_pick:Left"]
    assert any(c.startswith("label:No Step1X-3D") for c in main)
    st.mode = "texture"
    assert "operator:step1x3d.retexture:Retexture Selected" in _draw(bpy, panel.STEP1X3D_PT_main, bpy.context)
    settings = _draw(bpy, panel.STEP1X3D_PT_settings, bpy.context)
    assert {"prop:seed", "prop:steps", "prop:guidance", "prop:max_faces", "prop:texture_size",
            "prop:lod_levels", "prop:preset"} <= set(settings)
    assert "prop:inflate_depth" not in settings  # a backend option: drawn only once a server declares it
    assert bpy.ops.step1x3d.history_clear() == {"FINISHED"}
    assert "label:No jobs yet." in _draw(bpy, panel.STEP1X3D_PT_history, bpy.context)

    from blender_addon.blender.preferences import user_dir
    from blender_addon.core.history import History, HistoryEntry

    History(user_dir()).add(HistoryEntry(job_id="j1", name="chair", mode="full", state="done", result_dir="/x"))
    history = _draw(bpy, panel.STEP1X3D_PT_history, bpy.context)
    assert "operator:step1x3d.reimport:Re-import" in history and any("chair" in c for c in history)


def test_view_slots_draw_thumbnails_and_state_the_camera_convention(bpy: Any, addon: Any, tmp_path: Any) -> None:
    from blender_addon.blender import panel, preferences, previews
    from blender_addon.core.views import VIEW_DESCRIPTIONS

    from .assets import reference_png

    front = tmp_path / "chair.png"
    front.write_bytes(reference_png(48))
    st = bpy.context.window_manager.step1x3d
    st.front.filepath = str(front)
    image = bpy.data.images.new("right_ref", 16, 8)
    st.right.source, st.right.image_name = "IMAGE", image.name
    calls: list[str] = []
    panel.draw_view_slots(FakeLayout(bpy, calls), st)
    # Front: the file's thumbnail; right: the .blend image's preview; back and left: empty slots.
    assert sum(c.startswith("icon:") for c in calls) == 2
    assert calls.count("label:(empty)") == 2 and "label:(required)" not in calls
    assert [c for c in calls if c.startswith("  view=")] == ["  view=front"] * 2 + ["  view=right"] * 2 + [
        "  view=back"] * 2 + ["  view=left"] * 2
    assert "prop:filepath" in calls and "prop_search:image_name" in calls
    preview = previews.file_preview(str(front))
    assert preview is not None and tuple(preview.image_size) == (48, 48)  # the thumbnail is the chosen file
    assert previews.file_key(str(front)) in _loaded_thumbnails(previews)
    assert image.preview is not None  # ensured by the draw

    st.front.filepath = ""
    calls = []
    panel.draw_view_slots(FakeLayout(bpy, calls), st)
    assert "label:(required)" in calls

    # Tooltips: the operator's description and the slot property say the same convention.
    pick = bpy.types.STEP1X3D_OT_reference_pick
    for view in ("front", "right", "back", "left"):
        class Props:
            pass
        props = Props()
        props.view = view  # type: ignore[attr-defined]
        assert VIEW_DESCRIPTIONS[view] in pick.description(bpy.context, props)
        assert st.bl_rna.properties[view].description == VIEW_DESCRIPTIONS[view]
    assert "Numpad 3" in VIEW_DESCRIPTIONS["right"] and "+X" in VIEW_DESCRIPTIONS["right"]

    prefs_calls: list[str] = []
    preferences.STEP1X3D_AP_preferences.draw(Stand(FakeLayout(bpy, prefs_calls), addon), bpy.context)
    assert "prop:server_address" in prefs_calls and "prop:curve_server_key_file" in prefs_calls


def test_thumbnails_are_freed_when_the_addon_is_disabled(bpy: Any, addon: Any, tmp_path: Any) -> None:
    import addon_utils

    from blender_addon.blender import previews

    from .assets import reference_png

    path = tmp_path / "a.png"
    path.write_bytes(reference_png(16))
    assert previews.file_preview(str(path)) is not None and _loaded_thumbnails(previews)
    path.write_bytes(reference_png(24))  # a replaced file gets a new thumbnail
    assert tuple(previews.file_preview(str(path)).image_size) == (24, 24)
    addon_utils.disable("blender_addon", default_set=True)
    assert _loaded_thumbnails(previews) == [] and previews._collection is None
    addon_utils.enable("blender_addon", default_set=True)


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


def test_view_slots_fill_clear_and_send_in_the_servers_order(bpy: Any, addon: Any, tmp_path: Any) -> None:
    from blender_addon.blender.references import InputError, gather_panel

    from .assets import reference_png

    st = bpy.context.window_manager.step1x3d
    for name in ("front.png", "side.png", "rear.png"):
        (tmp_path / name).write_bytes(reference_png(16))
    bpy.ops.step1x3d.reference_add(directory=str(tmp_path), files=[{"name": "front.png"}, {"name": "side.png"}])
    assert (st.front.filepath, st.right.filepath) == (str(tmp_path / "front.png"), str(tmp_path / "side.png"))
    refs = gather_panel(st)
    assert (refs.names, refs.views) == (["front.png", "side.png"], ["front", "right"])

    # A back view without a right view: each image keeps its view, and the job names them.
    from blender_addon.core.views import views_setting

    assert bpy.ops.step1x3d.reference_clear(view="right") == {"FINISHED"} and st.right.filepath == ""
    bpy.ops.step1x3d.reference_pick(view="back", filepath=str(tmp_path / "rear.png"))
    refs = gather_panel(st)
    assert (refs.names, refs.views) == (["front.png", "rear.png"], ["front", "back"])
    assert views_setting(refs.views) == {"views": ["front", "back"]}
    assert views_setting(["front", "right"]) == {}  # the slots in order need no setting
    bpy.ops.step1x3d.reference_clear(view="front")
    with pytest.raises(InputError, match="^Add a front reference image"):
        gather_panel(st)

    # Fill the empty slots in order; more files than empty slots is refused without changing any.
    bpy.ops.step1x3d.reference_add(filepath=str(tmp_path / "front.png"))
    assert st.front.filepath.endswith("front.png") and st.back.filepath.endswith("rear.png")
    with pytest.raises(RuntimeError, match="3 images for 2 empty view slots"):
        bpy.ops.step1x3d.reference_add(directory=str(tmp_path), files=[{"name": n} for n in ("a", "b", "c")])
    assert (st.right.filepath, st.left.filepath) == ("", "")
    image = bpy.data.images.new("slot_painted", 4, 4)
    bpy.ops.step1x3d.reference_use_image(view="right", image_name=image.name)
    refs = gather_panel(st)
    assert (refs.names, refs.views) == (["front.png", "slot_painted.png", "rear.png"], ["front", "right", "back"])


def test_the_api_takes_named_views_or_a_list(bpy: Any, addon: Any, tmp_path: Any) -> None:
    from blender_addon import api
    from blender_addon.blender.references import InputError, gather

    from .assets import reference_png

    paths = []
    for name in ("f.png", "r.png"):
        (tmp_path / name).write_bytes(reference_png(16))
        paths.append(str(tmp_path / name))
    assert api._gather({"right": paths[1], "front": paths[0]}).names == ["f.png", "r.png"]
    assert api._gather(paths).views == ["front", "right"] == gather(paths).views
    with pytest.raises(InputError, match="Unknown view 'top'"):
        api._gather({"front": paths[0], "top": paths[1]})
    assert api._gather({"front": paths[0], "back": paths[1]}).views == ["front", "back"]

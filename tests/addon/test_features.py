"""The panel's features against real servers on loopback: Free VRAM, Regenerate, Variations, the history
gallery, and every job operator driven as the UI drives it (the operator returns at once, the timer's
poll step follows the job), with servers that are slow, busy, restarted or gone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .assets import reference_png
from .conftest import ServerProcess, free_port, scene_snapshot
from .test_ui import FakeLayout

CUBE = "tests.addon.pipelines:CubePipeline"
SLOW = "tests.addon.pipelines:SlowPipeline"
MEDIUM = "tests.addon.pipelines:MediumPipeline"


@pytest.fixture
def ref_image(tmp_path: Path) -> str:
    path = tmp_path / "chair.png"
    path.write_bytes(reference_png(128))
    return str(path)


@pytest.fixture
def ui_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Operators return at once, as in Blender's UI; the test then runs the timer's poll step."""
    from blender_addon.blender import operators

    monkeypatch.setattr(operators, "BLOCK_IN_BACKGROUND", False)


def _timer_until(bpy: Any, done: Callable[[], bool], seconds: float = 60.0) -> None:
    """What Blender's timer does, until ``done()``: poll_step every 20 ms."""
    from blender_addon.blender import runtime

    deadline = time.monotonic() + seconds
    while not done():
        runtime.poll_step(bpy.context)
        st = bpy.context.window_manager.step1x3d
        assert time.monotonic() < deadline, (st.job_state, st.job_text, st.last_message)
        time.sleep(0.02)


def _idle() -> bool:
    from blender_addon.blender import runtime

    return runtime.active_job() is None


def test_free_vram_from_the_panel(bpy: Any, addon: Any, start_server: Any, ref_image: str, ui_path: None,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from blender_addon.blender import runtime

    st = bpy.context.window_manager.step1x3d
    addon.server_address = start_server(SLOW)
    # While a job runs the server keeps its models: the request waits, and says so.
    assert bpy.ops.step1x3d.generate(images=[{"name": ref_image}]) == {"FINISHED"}
    _timer_until(bpy, lambda: st.job_state == "running")
    assert bpy.ops.step1x3d.free_vram() == {"FINISHED"}
    _timer_until(bpy, lambda: runtime._vram is not None and runtime._vram.welcomed)
    for _ in range(10):
        runtime.poll_step(bpy.context)
        time.sleep(0.02)
    assert runtime.vram_pending() and st.vram_line == "Freeing GPU memory (after the running job, if any)…"
    assert bpy.ops.step1x3d.cancel() == {"FINISHED"}
    _timer_until(bpy, lambda: not runtime.vram_pending() and _idle())
    assert st.vram_line.startswith("The server freed its GPU memory") and not st.vram_failed
    assert st.last_message == "Cancelled."

    # Headless it blocks; a server that is not there is one sentence.
    from blender_addon.blender import operators

    monkeypatch.setattr(operators, "BLOCK_IN_BACKGROUND", True)
    port = free_port()
    addon.server_address, addon.connect_timeout_s = f"tcp://127.0.0.1:{port}", 1.0
    with pytest.raises(RuntimeError, match=f"No Step1X-3D server answers at tcp://127.0.0.1:{port}"):
        bpy.ops.step1x3d.free_vram()
    assert st.vram_failed


def test_regenerate_replaces_the_result_in_place(bpy: Any, addon: Any, start_server: Any, ref_image: str) -> None:
    addon.server_address = start_server(CUBE)
    assert bpy.ops.step1x3d.generate(images=[{"name": ref_image}], seed=3, lod_levels=2) == {"FINISHED"}
    obj = bpy.data.objects["chair"]
    obj.location, obj.rotation_euler, obj.scale = (4.0, 5.0, 6.0), (0.1, 0.2, 0.3), (2.0, 2.0, 2.0)
    obj.modifiers.new("Bevel", "BEVEL")
    old_mesh = obj.data.name
    before = scene_snapshot(bpy)
    bpy.context.view_layer.objects.active = obj

    assert bpy.ops.step1x3d.regenerate() == {"FINISHED"}
    obj = bpy.data.objects["chair"]
    assert obj["step1x3d_seed"] != 3  # a new seed ...
    assert tuple(obj.location) == pytest.approx((4.0, 5.0, 6.0)) and tuple(obj.scale) == pytest.approx((2, 2, 2))
    assert [m.name for m in obj.modifiers] == ["Bevel"]
    assert obj.data.name == old_mesh and len(obj.data.polygons) == 12
    # ... and nothing piles up: the same names, the old mesh, material and maps removed.
    assert scene_snapshot(bpy) == before
    lod = bpy.data.objects["chair_LOD1"]
    assert lod.parent == obj and lod.hide_viewport
    assert bpy.context.window_manager.step1x3d.last_message == "Regenerated 'chair'."

    from blender_addon.blender import runtime

    entries = runtime.history_entries()
    assert entries[0].settings["seed"] == obj["step1x3d_seed"] and entries[1].settings["seed"] == 3
    assert entries[0].settings["lods"] == entries[1].settings["lods"] == [1.0, 0.5]  # same settings
    assert Path(entries[0].reference_files[0]).read_bytes() == Path(ref_image).read_bytes()

    # An object that is not a result: one sentence.
    bpy.ops.mesh.primitive_cube_add()
    with pytest.raises(RuntimeError, match="is not a Step1X-3D result"):
        bpy.ops.step1x3d.regenerate()


def test_variations_side_by_side_each_through_the_undoable_import(
    bpy: Any, addon: Any, start_server: Any, ref_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blender_addon.blender import operators

    addon.server_address = start_server(CUBE)
    st = bpy.context.window_manager.step1x3d
    st.front.filepath = ref_image
    st.randomize_seed, st.seed = False, 10
    bpy.context.scene.cursor.location = (1.0, 0.0, 0.0)
    imports: list[str] = []
    real = operators.STEP1X3D_OT_import_result.execute

    def spy(self: Any, context: Any) -> Any:
        imports.append(self.job_id)
        return real(self, context)

    monkeypatch.setattr(operators.STEP1X3D_OT_import_result, "execute", spy)
    assert bpy.ops.step1x3d.variations(count=3, spacing=2.0) == {"FINISHED"}
    objs = [bpy.data.objects[f"chair_v{i}"] for i in (1, 2, 3)]
    assert [o["step1x3d_seed"] for o in objs] == [10, 11, 12]
    assert [tuple(o.location) for o in objs] == [(1.0, 0.0, 0.0), (3.0, 0.0, 0.0), (5.0, 0.0, 0.0)]
    assert len(set(imports)) == 3  # three undo steps, one per result


def test_variations_cancel_as_a_batch(bpy: Any, addon: Any, start_server: Any, ref_image: str,
                                      ui_path: None) -> None:
    from blender_addon.blender import runtime

    addon.server_address = start_server(SLOW)
    st = bpy.context.window_manager.step1x3d
    st.front.filepath = ref_image
    before = scene_snapshot(bpy)
    assert bpy.ops.step1x3d.variations(count=3) == {"FINISHED"}
    assert len(runtime.all_jobs()) == 3
    _timer_until(bpy, lambda: st.job_state == "running")
    assert st.job_text.startswith("Variation 1 of 3: ") and st.job_fraction < 1 / 3
    assert bpy.ops.step1x3d.cancel() == {"FINISHED"}
    _timer_until(bpy, _idle, 20)
    assert scene_snapshot(bpy) == before and st.job_id == ""
    assert [e.state for e in runtime.history_entries()[:3]] == ["cancelled"] * 3


def test_history_gallery_thumbnails_reimport_and_reuse(bpy: Any, addon: Any, start_server: Any,
                                                       ref_image: str) -> None:
    from blender_addon.blender import panel, previews, runtime

    addon.server_address = start_server(CUBE)
    assert bpy.ops.step1x3d.generate(images=[{"name": ref_image}], seed=42, steps=7) == {"FINISHED"}
    entry = runtime.history_entries()[0]
    calls: list[str] = []
    panel.draw_history_entry(FakeLayout(bpy, calls), entry)
    assert sum(c.startswith("icon:") for c in calls) == 2  # the result's map and its front reference
    assert "operator:step1x3d.reimport:Re-import" in calls and "operator:step1x3d.history_reuse:Reuse" in calls
    result_thumb = previews.file_preview(str(Path(entry.result_dir) / "base_color.png"))
    assert tuple(result_thumb.image_size) == (256, 256)  # the CubePipeline's base colour map
    assert tuple(previews.file_preview(entry.reference_files[0]).image_size) == (128, 128)

    st = bpy.context.window_manager.step1x3d
    st.seed, st.steps, st.randomize_seed = 1, 50, True
    assert bpy.ops.step1x3d.history_reuse(job_id=entry.job_id) == {"FINISHED"}
    assert (st.seed, st.steps, st.randomize_seed) == (42, 7, False)
    assert st.front.filepath == entry.reference_files[0] and st.right.filepath == ""
    assert bpy.ops.step1x3d.generate() == {"FINISHED"}  # the panel now repeats that job exactly
    assert bpy.data.objects["chair.001"]["step1x3d_seed"] == 42


# -- the UI path with servers that misbehave ------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Servers this test may stop and restart (not shared with other tests)."""
    started: list[ServerProcess] = []

    def start(backend: str, *extra: str) -> ServerProcess:
        server = ServerProcess(backend, tmp_path / "results", *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("how", ["killed", "shut down"])
def test_ui_path_with_a_server_that_goes_away(bpy: Any, addon: Any, ref_image: str, ui_path: None,
                                              own_server: Any, how: str) -> None:
    server = own_server(SLOW)
    addon.server_address, addon.stall_timeout_s = server.address, 5.0
    st = bpy.context.window_manager.step1x3d
    before = scene_snapshot(bpy)
    assert bpy.ops.step1x3d.generate(images=[{"name": ref_image}]) == {"FINISHED"}
    _timer_until(bpy, lambda: st.job_state == "running")
    if how == "killed":  # gone without a word (crash, power, network): silence, then the timeout
        server.proc.kill()
        _timer_until(bpy, lambda: "went silent" in st.job_text, 30)
        assert bpy.ops.step1x3d.cancel.poll()  # a way out while it waits
        _timer_until(bpy, _idle, 30)
        expected = f"The Step1X-3D server at {server.address} stopped answering during the job"
    else:  # SIGTERM: the server cancels the running job after its grace period and says so
        server.proc.terminate()
        _timer_until(bpy, _idle, 30)
        expected = f"The Step1X-3D server at {server.address} stopped the job (it was shutting down)"
    assert st.last_failed and st.last_message.startswith(expected), st.last_message
    assert scene_snapshot(bpy) == before
    assert bpy.ops.step1x3d.generate.poll()  # and the panel offers Generate again


def test_ui_path_with_a_server_that_restarts(bpy: Any, addon: Any, ref_image: str, ui_path: None,
                                             own_server: Any) -> None:
    server = own_server(MEDIUM)
    port = server.address.rsplit(":", 1)[1]
    addon.server_address, addon.stall_timeout_s = server.address, 60.0
    st = bpy.context.window_manager.step1x3d
    assert bpy.ops.step1x3d.generate(images=[{"name": ref_image}], seed=5) == {"FINISHED"}
    _timer_until(bpy, lambda: st.job_state == "running")
    server.proc.kill()  # crashed mid-job; restarted on the same port, with the same results folder
    _timer_until(bpy, lambda: "went silent" in st.job_text, 30)
    own_server(MEDIUM, "--port", port)  # own_server gives every server of this test one results folder
    _timer_until(bpy, _idle, 90)  # the client resubmits to the new server and imports the result
    assert st.last_message == "Imported 'chair'.", st.last_message
    assert bpy.data.objects["chair"]["step1x3d_seed"] == 5


def test_ui_path_with_a_busy_server(bpy: Any, addon: Any, ref_image: str, ui_path: None, own_server: Any) -> None:
    from blender_addon.blender import runtime

    server = own_server(SLOW, "--limit", "max_queue=1")
    addon.server_address = server.address
    st = bpy.context.window_manager.step1x3d
    # Two jobs from other clients fill the server (one running, one queued).
    from blender_addon.blender import jobs
    from blender_addon.blender.preferences import get_prefs
    from blender_addon.blender.references import gather

    others: list[Any] = []
    try:
        for wanted in ("running", "queued"):  # one after the other: the worker may still be loading
            others.append(jobs.start_generate(gather([ref_image]), {"mode": "full"}, get_prefs()))
            deadline = time.monotonic() + 30
            while others[-1].session.view.state != wanted:
                for job in others:
                    job.session.step(20)
                assert time.monotonic() < deadline, [j.session.view for j in others]
        before = scene_snapshot(bpy)
        assert bpy.ops.step1x3d.generate(images=[{"name": ref_image}]) == {"FINISHED"}
        _timer_until(bpy, _idle, 30)
        assert st.last_failed and "busy" in st.last_message.lower(), st.last_message
        assert scene_snapshot(bpy) == before and runtime.active_job() is None
    finally:
        for job in others:
            job.session.cancel()
            job.session.close()


def test_disabling_mid_batch_with_a_vram_request_pending_closes_everything(
    bpy: Any, addon: Any, start_server: Any, ref_image: str, ui_path: None
) -> None:
    import addon_utils

    from blender_addon.blender import runtime

    addon.server_address = start_server(SLOW)
    st = bpy.context.window_manager.step1x3d
    st.front.filepath = ref_image
    assert bpy.ops.step1x3d.variations(count=2) == {"FINISHED"}
    _timer_until(bpy, lambda: st.job_state == "running")
    assert bpy.ops.step1x3d.free_vram() == {"FINISHED"} and runtime.vram_pending()
    sessions = [job.session for job in runtime.all_jobs()]
    addon_utils.disable("blender_addon", default_set=True)  # what quitting Blender does
    # Counted, not timed: nothing is left to wait for -- no job, no socket, no request, no timer.
    assert not runtime._jobs and runtime._vram is None and runtime._probe is None
    assert all(s._conn is None for s in sessions)
    assert not bpy.app.timers.is_registered(runtime._timer)
    addon_utils.enable("blender_addon", default_set=True)


def test_the_backends_declared_options_are_drawn_sent_and_restored(bpy: Any, addon: Any, start_server: Any,
                                                                  ref_image: str) -> None:
    # No per-option code in the add-on: what a backend declares in welcome becomes panel widgets
    # (the neural backend's geometry LoRA and Style drop-downs here), and their values reach it.
    from blender_addon.blender import options_ui, panel, properties, runtime

    st = bpy.context.window_manager.step1x3d

    def check_status(address: str) -> list[str]:
        addon.server_address = address
        deadline = time.monotonic() + 30
        while True:  # a fresh server answers before its backend has loaded: ask until it has
            assert bpy.ops.step1x3d.refresh_status() == {"FINISHED"}
            _timer_until(bpy, lambda: runtime._probe is not None and runtime._probe.finished)
            if "loading" not in st.server_line:
                break
            assert time.monotonic() < deadline, st.server_line
        calls: list[str] = []
        panel.STEP1X3D_PT_settings.draw(type("Stand", (), {"layout": FakeLayout(bpy, calls)})(), bpy.context)
        return calls

    plain = check_status(start_server(CUBE))  # declares nothing: nothing drawn, nothing sent
    assert not [c for c in plain if "lora" in c] and properties.job_settings(st, 1)["options"] == {}
    calls = check_status(start_server("tests.addon.pipelines:LoraCubePipeline"))
    assert [c for c in calls if "lora" in c] == ["prop:geometry_lora", "prop:geometry_lora_scale", "prop:lora",
                                                 "prop:lora_scale"]
    group = bpy.context.window_manager.step1x3d_options
    rna = group.bl_rna.properties
    assert [i.identifier for i in rna["geometry_lora"].enum_items] == [options_ui.NONE_ID, "chairs", "tables"]
    assert [i.identifier for i in rna["lora"].enum_items] == [options_ui.NONE_ID, "ink"]
    assert rna["lora"].name == "Style" and rna["lora"].description.startswith("Texture stage: a style LoRA")
    assert (rna["geometry_lora_scale"].hard_min, rna["geometry_lora_scale"].hard_max) == (0.0, 2.0)
    assert properties.job_settings(st, 1)["options"] == {  # "None" asks for no LoRA
        "geometry_lora": "", "geometry_lora_scale": 1.0, "lora": "", "lora_scale": 1.0}
    group.geometry_lora, group.geometry_lora_scale, group.lora = "tables", 0.5, "ink"
    group.geometry_lora_scale = 7.0  # Blender clamps to the declared maximum
    assert properties.job_settings(st, 1)["options"] == {
        "geometry_lora": "tables", "geometry_lora_scale": 2.0, "lora": "ink", "lora_scale": 1.0}
    # A job from the panel: the server accepts the options and the backend gets their values
    # (this test backend makes the cube's edge 1 m x the geometry LoRA scale).
    group.geometry_lora_scale = 1.5
    assert bpy.ops.step1x3d.generate(images=[{"name": ref_image}], seed=1) == {"FINISHED"}, st.last_message
    obj = bpy.data.objects[st.last_object]
    assert max(obj.dimensions) == pytest.approx(1.5, abs=1e-4)
    # Scripts: backend_options (JSON) over the panel's values; a bad map is one sentence, no job.
    assert bpy.ops.step1x3d.generate(images=[{"name": ref_image}], seed=1,
                                     backend_options='{"geometry_lora_scale": 0.5}') == {"FINISHED"}
    assert max(bpy.data.objects[st.last_object].dimensions) == pytest.approx(0.5, abs=1e-4)
    with pytest.raises(RuntimeError, match="options must be a JSON map"):
        bpy.ops.step1x3d.generate(images=[{"name": ref_image}], backend_options="[1]")
    with pytest.raises(RuntimeError, match=r"option geometry_lora_scale must be between 0.0 and 2.0, got 9\."):
        bpy.ops.step1x3d.generate(images=[{"name": ref_image}], backend_options='{"geometry_lora_scale": 9}')
    assert st.last_failed  # the server's bad_settings, as the panel shows it
    # Presets and history put option values back where the backend declares them, and skip the rest.
    assert options_ui.set_values(bpy.context.window_manager, {"lora": "", "inflate_depth": 0.5, "geometry_lora":
                                                              "gone"}) == ["lora"]
    assert group.lora == options_ui.NONE_ID and group.geometry_lora == "tables"
    # Another declaration rebuilds the group, keeping the values it still allows.
    from inference_server.neural.options import GEOMETRY_LORA_SCALE, geometry_lora

    assert options_ui.declare((geometry_lora(["tables", "desks"]), GEOMETRY_LORA_SCALE)) is True
    group = bpy.context.window_manager.step1x3d_options
    assert (group.geometry_lora, group.geometry_lora_scale) == ("tables", 1.5)
    assert options_ui.declare((geometry_lora(["desks"]), GEOMETRY_LORA_SCALE)) is True
    assert bpy.context.window_manager.step1x3d_options.geometry_lora == options_ui.NONE_ID  # "tables" is gone
    check_status(start_server(CUBE))  # a server that declares nothing: no options drawn or sent
    assert not hasattr(bpy.context.window_manager, "step1x3d_options")
    assert properties.job_settings(st, 1)["options"] == {}

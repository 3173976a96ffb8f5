"""End to end: the add-on in the real bpy wheel against a real server process on loopback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .assets import reference_png
from .conftest import free_port, scene_snapshot

CUBE = "tests.addon.pipelines:CubePipeline"
SLOW = "tests.addon.pipelines:SlowPipeline"


@pytest.fixture
def ref_image(tmp_path: Path) -> str:
    path = tmp_path / "chair.png"
    path.write_bytes(reference_png(128))
    return str(path)


def _received(job_name: str) -> dict[str, np.ndarray]:
    """The arrays exactly as the server sent them (kept by the add-on for History re-import)."""
    from blender_addon.blender import runtime

    entry = next(e for e in runtime.history_entries() if e.name == job_name)
    with np.load(Path(entry.result_dir) / "mesh.npz") as data:
        return {k: data[k] for k in data.files}


def test_generate_end_to_end_with_the_weight_free_backend(bpy: Any, addon: Any, start_server: Any,
                                                          ref_image: str) -> None:
    addon.server_address = start_server("inflate")
    views: list[Any] = []
    from blender_addon import api

    obj = api.generate([ref_image], texture_size=512, max_faces=5000, progress=views.append, timeout=240)
    assert obj.name == "chair" and obj.users_collection[0].name == "chair"
    sent = _received("chair")
    assert len(obj.data.vertices) == len(sent["mesh.positions"])
    assert len(obj.data.polygons) == len(sent["mesh.faces"])
    assert obj.data.uv_layers.active is not None
    uv = np.empty(len(obj.data.loops) * 2, dtype=np.float32)
    obj.data.uv_layers.active.uv.foreach_get("vector", uv)
    expected = sent["mesh.uvs"][sent["mesh.faces"].ravel()].copy()
    expected[:, 1] = 1.0 - expected[:, 1]
    assert np.allclose(uv.reshape(-1, 2), expected, atol=1e-6)
    images = {n.image.name for n in obj.active_material.node_tree.nodes if n.type == "TEX_IMAGE"}
    assert "chair_base_color" in images
    assert all(bpy.data.images[n].packed_file is not None for n in images)
    assert obj["step1x3d_backend"] == "inflate"
    assert any(v.state == "running" for v in views) and views[-1].state == "done"


def test_retexture_with_the_weight_free_backend_paints_into_the_objects_uvs(
    bpy: Any, addon: Any, start_server: Any, ref_image: str
) -> None:
    addon.server_address = start_server("inflate")
    from blender_addon import api

    bpy.ops.mesh.primitive_uv_sphere_add(segments=24, ring_count=12, location=(0.0, 3.0, 0.0))
    obj = bpy.context.active_object
    obj.name = "Ball"
    uv_before = np.empty(len(obj.data.loops) * 2, dtype=np.float32)
    obj.data.uv_layers.active.uv.foreach_get("vector", uv_before)
    assert api.retexture(obj, [ref_image], texture_size=512, timeout=240) == obj
    uv_after = np.empty_like(uv_before)
    obj.data.uv_layers.active.uv.foreach_get("vector", uv_after)
    assert np.array_equal(uv_before, uv_after)  # the artist's own UVs carry the new maps
    assert obj.active_material.name == "Ball_step1x3d"
    assert obj.active_material["step1x3d_backend"] == "inflate"


def test_generate_operator_headless_with_lods(bpy: Any, addon: Any, start_server: Any, ref_image: str) -> None:
    addon.server_address = start_server(CUBE)
    before = set(bpy.data.objects.keys())
    assert bpy.ops.step1x3d.generate(images=[{"name": ref_image}], lod_levels=2, seed=3) == {"FINISHED"}
    new = set(bpy.data.objects.keys()) - before
    assert new == {"chair", "chair_LOD1"}
    obj = bpy.data.objects["chair"]
    assert (len(obj.data.vertices), len(obj.data.polygons)) == (24, 12)
    assert obj["step1x3d_seed"] == 3
    st = bpy.context.window_manager.step1x3d
    assert st.last_message == "Imported 'chair'." and not st.last_failed

    # History re-import gives a second, identical object.
    from blender_addon.blender import runtime

    entry = runtime.history_entries()[0]
    assert entry.state == "done" and entry.faces == 12
    assert bpy.ops.step1x3d.reimport(job_id=entry.job_id) == {"FINISHED"}
    assert len(bpy.data.objects["chair.001"].data.polygons) == 12


def test_timer_path_imports_only_inside_the_undoable_operator(bpy: Any, addon: Any, start_server: Any,
                                                               ref_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from blender_addon.blender import jobs, operators, runtime
    from blender_addon.blender.preferences import get_prefs
    from blender_addon.blender.references import gather

    addon.server_address = start_server(CUBE)
    job = jobs.start_generate(gather([ref_image]), {"mode": "full", "seed": 1}, get_prefs())
    runtime.add_job(job)
    calls: list[dict[str, list[str]]] = []
    real_execute = operators.STEP1X3D_OT_import_result.execute

    def spy(self: Any, context: Any) -> Any:
        calls.append(scene_snapshot(bpy))  # what exists when the undoable operator starts
        return real_execute(self, context)

    monkeypatch.setattr(operators.STEP1X3D_OT_import_result, "execute", spy)
    before = scene_snapshot(bpy)
    deadline = time.monotonic() + 60
    while runtime.poll_step(bpy.context) and runtime.active_job() is not None:  # what the timer calls
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert calls == [before]  # nothing was created before step1x3d.import_result ran
    assert "chair" in bpy.data.objects
    assert bpy.context.window_manager.step1x3d.last_object == "chair"


def test_retexture_keeps_transform_modifiers_and_name(bpy: Any, addon: Any, start_server: Any,
                                                      ref_image: str) -> None:
    addon.server_address = start_server(CUBE)
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(2.0, -1.0, 0.5), rotation=(0.1, 0.2, 0.3))
    obj = bpy.context.active_object
    obj.name = "Crate"
    obj.scale = (1.5, 1.0, 0.5)
    bevel = obj.modifiers.new("Bevel", "BEVEL")
    bevel.width = 0.05
    mesh_name = obj.data.name
    bpy.context.view_layer.update()
    matrix = [list(row) for row in obj.matrix_world]
    counts = (len(obj.data.vertices), len(obj.data.polygons))

    assert bpy.ops.step1x3d.retexture(images=[{"name": ref_image}], texture_size=512) == {"FINISHED"}
    obj = bpy.data.objects["Crate"]
    bpy.context.view_layer.update()
    assert [list(row) for row in obj.matrix_world] == matrix
    assert tuple(obj.scale) == pytest.approx((1.5, 1.0, 0.5))
    assert [(m.name, m.type) for m in obj.modifiers] == [("Bevel", "BEVEL")]
    assert obj.data.name == mesh_name and (len(obj.data.vertices), len(obj.data.polygons)) == counts
    mat = obj.active_material
    assert mat.name == "Crate_step1x3d"
    images = {n.image.name for n in mat.node_tree.nodes if n.type == "TEX_IMAGE"}
    assert images == {"Crate_step1x3d_base_color", "Crate_step1x3d_orm", "Crate_step1x3d_normal"}
    assert "Crate.001" not in bpy.data.objects


def test_cancel_mid_job_leaves_the_scene_untouched(bpy: Any, addon: Any, start_server: Any, ref_image: str) -> None:
    from blender_addon.blender import jobs, runtime
    from blender_addon.blender.preferences import get_prefs
    from blender_addon.blender.references import gather

    addon.server_address = start_server(SLOW)
    before = scene_snapshot(bpy)
    job = jobs.start_generate(gather([ref_image]), {"mode": "full"}, get_prefs())
    runtime.add_job(job)
    st = bpy.context.window_manager.step1x3d
    deadline = time.monotonic() + 60
    while st.job_state != "running":
        runtime.poll_step(bpy.context)
        assert time.monotonic() < deadline, st.job_text
        time.sleep(0.02)
    assert bpy.ops.step1x3d.cancel() == {"FINISHED"}
    deadline = time.monotonic() + 60  # a guard against hanging, not a speed check
    while runtime.active_job() is not None:
        runtime.poll_step(bpy.context)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert st.last_message == "Cancelled."
    assert scene_snapshot(bpy) == before
    assert runtime.history_entries()[0].state == "cancelled"


def test_offline_server_gives_the_offline_sentence_quickly(bpy: Any, addon: Any, ref_image: str) -> None:
    port = free_port()  # nothing listens here
    addon.server_address = f"tcp://127.0.0.1:{port}"
    addon.connect_timeout_s = 1.0
    before = scene_snapshot(bpy)
    with pytest.raises(RuntimeError) as info:  # bpy turns an operator's ERROR report into RuntimeError
        bpy.ops.step1x3d.generate(images=[{"name": ref_image}])
    message = bpy.context.window_manager.step1x3d.last_message
    assert message == f"No Step1X-3D server answers at tcp://127.0.0.1:{port}: start one with " \
                      f"'step1x3d serve --port {port}' or fix the address in the add-on preferences."
    assert message in str(info.value) and "Traceback" not in str(info.value)
    assert scene_snapshot(bpy) == before

    from blender_addon import api

    with pytest.raises(api.Step1X3DError, match="No Step1X-3D server answers"):
        api.generate([ref_image])


def test_bad_input_is_one_sentence_and_no_job(bpy: Any, addon: Any, ref_image: str, tmp_path: Path) -> None:
    from blender_addon import api

    with pytest.raises(api.Step1X3DError, match="neither a file nor an image"):
        api.generate([str(tmp_path / "nope.png")])
    with pytest.raises(api.Step1X3DError, match="^Steps must be between 1 and 200, got 0.$"):
        api.generate([ref_image], steps=0)
    with pytest.raises(api.Step1X3DError, match="Select a mesh object"):
        api.retexture(None, [ref_image])  # type: ignore[arg-type]


def test_status_line_from_a_real_server(bpy: Any, addon: Any, start_server: Any) -> None:
    from blender_addon.blender import runtime

    addon.server_address = start_server(CUBE)
    st = bpy.context.window_manager.step1x3d
    deadline = time.monotonic() + 30
    while "on cpu" not in st.server_line:  # a fresh server answers before its backend has loaded
        assert bpy.ops.step1x3d.refresh_status() == {"FINISHED"}
        while runtime.poll_step(bpy.context):
            assert time.monotonic() < deadline, st.server_line
            time.sleep(0.02)
        assert st.server_online, st.server_line
    assert st.server_line == "Connected: test-cube on cpu, idle"


def test_disabling_with_a_job_in_flight_is_instant(bpy: Any, addon: Any, start_server: Any, ref_image: str) -> None:
    import addon_utils

    from blender_addon.blender import jobs, runtime
    from blender_addon.blender.preferences import get_prefs
    from blender_addon.blender.references import gather

    addon.server_address = start_server(SLOW)
    job = jobs.start_generate(gather([ref_image]), {"mode": "full"}, get_prefs())
    runtime.add_job(job)
    deadline = time.monotonic() + 30
    while bpy.context.window_manager.step1x3d.job_state != "running":
        runtime.poll_step(bpy.context)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    addon_utils.disable("blender_addon", default_set=True)  # what quitting Blender does
    assert not runtime._jobs and job.session._conn is None
    addon_utils.enable("blender_addon", default_set=True)  # the fixture disables it again


def test_ctrl_c_in_a_script_cancels_the_job_on_the_server(bpy: Any, addon: Any, start_server: Any,
                                                          ref_image: str) -> None:
    from blender_addon import api
    from blender_addon.client.connection import ServerConnection
    from blender_addon.client.events import StateChanged

    addon.server_address = start_server(SLOW)
    before = scene_snapshot(bpy)
    job_ids: list[str] = []

    def interrupt(view: Any) -> None:
        if view.state == "running":
            raise KeyboardInterrupt

    from blender_addon.blender import jobs

    real_start = jobs.start_generate

    def spy(*args: Any, **kw: Any) -> Any:
        job = real_start(*args, **kw)
        job_ids.append(job.job_id)
        return job

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jobs, "start_generate", spy)
        with pytest.raises(KeyboardInterrupt):
            api.generate([ref_image], progress=interrupt, timeout=60)
    assert scene_snapshot(bpy) == before

    with ServerConnection(addon.server_address) as conn:  # what does the server say about that job now?
        conn.attach(job_ids[0])
        deadline = time.monotonic() + 10
        states: list[str] = []
        while "cancelled" not in states:
            states += [e.state for e in conn.poll(100) if isinstance(e, StateChanged)]
            assert time.monotonic() < deadline, states


def test_generate_in_texture_mode_retextures_the_active_object(bpy: Any, addon: Any, start_server: Any,
                                                                ref_image: str) -> None:
    addon.server_address = start_server(CUBE)
    bpy.ops.mesh.primitive_cube_add()
    obj = bpy.context.active_object
    bpy.context.window_manager.step1x3d.mode = "texture"  # the panel's "Texture Selected"
    assert bpy.ops.step1x3d.generate(images=[{"name": ref_image}], texture_size=512) == {"FINISHED"}
    assert obj.active_material.name == f"{obj.name}_step1x3d"
    assert bpy.context.window_manager.step1x3d.last_message == f"Retextured '{obj.name}'."


def test_a_job_over_the_servers_limits_is_one_sentence_and_no_stuck_job(bpy: Any, addon: Any, start_server: Any,
                                                                        tmp_path: Path) -> None:
    from blender_addon import api
    from blender_addon.blender import jobs, runtime
    from blender_addon.blender.preferences import get_prefs
    from blender_addon.blender.references import gather
    from blender_addon.core.png import encode_png

    # A server that takes images up to 64 KB; this noise PNG is about 156 KB.
    addon.server_address = start_server(CUBE, "--limit", "max_frame_bytes=65536", "--limit", "max_total_bytes=131072")
    addon.connect_timeout_s = 2.0
    addon.stall_timeout_s = 2.0  # before the client checked limits, the job hung until this gave up
    big = tmp_path / "big.png"
    big.write_bytes(encode_png(np.random.default_rng(1).integers(0, 256, (200, 200, 4), dtype=np.uint8), level=0))
    expected = (f"big.png is {big.stat().st_size / 1024:.0f} KB; this server accepts images up to 64 KB per file: "
                "save it as JPEG (or 8-bit PNG) or scale it down.")
    st = bpy.context.window_manager.step1x3d
    before = scene_snapshot(bpy)

    # A hang would end in the stall sentence after stall_timeout_s, not in the size sentence.
    with pytest.raises(RuntimeError) as info:  # the blocking operator: an ERROR report, no traceback
        bpy.ops.step1x3d.generate(images=[{"name": str(big)}])
    assert st.last_message == expected and st.last_failed
    assert expected in str(info.value) and "Traceback" not in str(info.value)
    entry = runtime.history_entries()[0]
    assert (entry.state, entry.message, entry.name) == ("failed", expected, "big")

    # The panel's timer path: the job ends failed on the next poll, nothing stays pending.
    job = jobs.start_generate(gather([str(big)]), {"mode": "full"}, get_prefs())
    runtime.add_job(job)
    deadline = time.monotonic() + 2.0
    while runtime.active_job() is not None:
        runtime.poll_step(bpy.context)
        assert time.monotonic() < deadline, st.job_text
        time.sleep(0.02)
    assert st.last_message == expected and st.last_failed and st.job_id == ""
    assert runtime.history_entries()[0].job_id == job.job_id and runtime.history_entries()[0].state == "failed"

    with pytest.raises(api.Step1X3DError) as api_info:  # the headless API
        api.generate([str(big)])
    assert str(api_info.value) == expected
    assert scene_snapshot(bpy) == before

    # The same server still runs a job within its limits.
    small = tmp_path / "small.png"
    small.write_bytes(reference_png(32))
    assert api.generate([str(small)], timeout=60).name == "small"


def _object_state(obj: Any) -> dict[str, Any]:
    """Everything a retexture job may touch on its object before the result arrives."""
    mesh = obj.data
    return {
        "uv_layers": [layer.name for layer in mesh.uv_layers],
        "select": [v.select for v in mesh.vertices] + [p.select for p in mesh.polygons],
        "materials": [slot.material.name if slot.material else "" for slot in obj.material_slots],
        "mesh": (mesh.name, len(mesh.vertices), len(mesh.polygons)),
        "mode": obj.mode,
        "matrix": [list(row) for row in obj.matrix_world],
    }


def _uvless_cube(bpy: Any, name: str) -> Any:
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(1.0, 2.0, 3.0))
    obj = bpy.context.active_object
    obj.name = name
    while obj.data.uv_layers:
        obj.data.uv_layers.remove(obj.data.uv_layers[0])
    obj.data.vertices[0].select = False  # Smart UV Project selects everything: this must come back
    return obj


def test_a_failed_or_cancelled_retexture_leaves_the_object_exactly_as_it_was(
    bpy: Any, addon: Any, start_server: Any, ref_image: str
) -> None:
    from blender_addon.blender import jobs, runtime
    from blender_addon.blender.preferences import get_prefs
    from blender_addon.blender.references import gather

    # Failure: no server answers (the blocking operator, as a script runs it).
    obj = _uvless_cube(bpy, "Bare")
    before = _object_state(obj)
    addon.server_address = f"tcp://127.0.0.1:{free_port()}"
    addon.connect_timeout_s = 1.0
    with pytest.raises(RuntimeError, match="No Step1X-3D server answers"):
        bpy.ops.step1x3d.retexture(object_name="Bare", images=[{"name": ref_image}])
    assert _object_state(obj) == before and len(obj.data.uv_layers) == 0

    # Cancelled mid-job, through the panel's timer path.
    addon.server_address = start_server(SLOW)
    addon.connect_timeout_s = 5.0
    job = jobs.start_retexture(bpy.context, obj, gather([ref_image]), {"mode": "texture"}, get_prefs())
    assert [layer.name for layer in obj.data.uv_layers] == ["UVMap"]  # sent with a Smart UV Project map
    runtime.add_job(job)
    st = bpy.context.window_manager.step1x3d
    deadline = time.monotonic() + 60
    while st.job_state != "running":
        runtime.poll_step(bpy.context)
        assert time.monotonic() < deadline, st.job_text
        time.sleep(0.02)
    assert bpy.ops.step1x3d.cancel() == {"FINISHED"}
    while runtime.active_job() is not None:
        runtime.poll_step(bpy.context)
        assert time.monotonic() < deadline + 10
        time.sleep(0.02)
    assert st.last_message == "Cancelled."
    assert _object_state(obj) == before

    # Disabling the add-on (quitting Blender) mid-job rolls back too.
    import addon_utils

    job = jobs.start_retexture(bpy.context, obj, gather([ref_image]), {"mode": "texture"}, get_prefs())
    runtime.add_job(job)
    addon_utils.disable("blender_addon", default_set=True)
    assert _object_state(obj) == before
    addon_utils.enable("blender_addon", default_set=True)
    addon = bpy.context.preferences.addons["blender_addon"].preferences  # the old one was freed

    # A successful job keeps the map it painted into.
    addon.server_address = start_server(CUBE)
    assert bpy.ops.step1x3d.retexture(object_name="Bare", images=[{"name": ref_image}], texture_size=512) \
        == {"FINISHED"}
    assert [layer.name for layer in obj.data.uv_layers] == ["UVMap"] and obj.active_material.name == "Bare_step1x3d"

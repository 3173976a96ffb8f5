"""The add-on's pure logic (no bpy): frames, mesh arrays, payloads, history, presets, PNG, the job session."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from blender_addon.client.events import Accepted, Offline, Progress, Result, ResultReady, StateChanged, Welcome
from blender_addon.core import axes, wording
from blender_addon.core.clientmesh import client_mesh_payload
from blender_addon.core.history import History, HistoryEntry
from blender_addon.core.meshdata import blender_arrays_from_result
from blender_addon.protocol.errors import Step1X3DError
from blender_addon.core.naming import asset_name, texture_name
from blender_addon.core.payload import ResultPayload, load_payload, save_payload
from blender_addon.core.png import encode_png, float_pixels_to_rgba8
from blender_addon.core.presets import BUILTIN_PRESETS, PresetStore
from blender_addon.client.session import JobSession, wait
from blender_addon.protocol.settings import SettingsError

from .assets import cube_arrays, cube_textures


def test_package_root_imports_without_bpy() -> None:
    import subprocess
    import sys

    code = "import sys, blender_addon, blender_addon.client.session; assert 'bpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_axes_match_the_gltf_importer_and_round_trip() -> None:
    v = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    assert axes.gltf_to_blender_vectors(v).tolist() == [[1.0, -3.0, 2.0]]  # (x, y, z) -> (x, -z, y)
    assert np.array_equal(axes.blender_to_gltf_vectors(axes.gltf_to_blender_vectors(v)), v)
    assert np.allclose(axes.flip_v(np.array([[0.25, 0.1]])), [[0.25, 0.9]])


def test_mesh_arrays_are_laid_out_per_corner() -> None:
    mesh = cube_arrays()
    arrays = blender_arrays_from_result({**mesh, "smooth": False})
    assert arrays.vertex_count == 24 and arrays.face_count == 12
    assert arrays.corner_verts.dtype == np.int32 and arrays.loop_starts.tolist() == list(range(0, 36, 3))
    assert arrays.corner_uvs is not None
    corner0 = mesh["faces"][0, 0]
    assert arrays.corner_uvs[:2].tolist() == pytest.approx([mesh["uvs"][corner0, 0], 1 - mesh["uvs"][corner0, 1]])
    assert not arrays.smooth


@pytest.mark.parametrize(
    "change, words",
    [
        ({"faces": np.array([[0, 1, 99]], dtype=np.uint32)}, "do not exist"),
        ({"positions": np.full((3, 3), np.nan, dtype=np.float32), "faces": np.array([[0, 1, 2]])}, "non-finite"),
        ({"uvs": np.zeros((2, 2), dtype=np.float32)}, "different number of UVs"),
        ({"faces": np.zeros((0, 3), dtype=np.uint32)}, "empty"),
        ({"faces": np.zeros((4, 4), dtype=np.uint32)}, "shape"),
    ],
)
def test_bad_meshes_are_refused_with_one_sentence(change: dict[str, Any], words: str) -> None:
    with pytest.raises(Step1X3DError, match=words) as refused:
        blender_arrays_from_result({**cube_arrays(), **change})
    assert refused.value.code == "bad_mesh"


def test_client_mesh_splits_vertices_at_uv_seams() -> None:
    # A quad made of two triangles whose shared edge is a UV seam on one corner.
    positions = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)
    corner_verts = np.array([0, 1, 2, 0, 2, 3])
    tri = np.arange(6)
    uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 0], [0.5, 0.5], [0, 1]], dtype=np.float32)
    out = client_mesh_payload(positions, corner_verts, tri, uvs)
    assert out["positions"].shape == (5, 3)  # vertex 2 split in two
    assert out["faces"].shape == (2, 3) and out["faces"].max() == 4
    # Back in the Blender frame, each corner gets its own UV again.
    corner_uvs = axes.flip_v(out["uvs"])[out["faces"].ravel()]
    assert np.allclose(corner_uvs, uvs)
    assert np.allclose(axes.gltf_to_blender_vectors(out["positions"])[out["faces"].ravel()], positions[corner_verts])
    plain = client_mesh_payload(positions, corner_verts, tri, None)
    assert plain["positions"].shape == (4, 3) and "uvs" not in plain


def test_payload_round_trips_through_the_results_folder(tmp_path: Path) -> None:
    mesh = {**cube_arrays(), "smooth": False}
    payload = ResultPayload(mesh=mesh, textures=cube_textures(), material={"roughness_factor": 0.5},
                            lods=[{**cube_arrays(0.25), "smooth": True}], provenance={"seed": 3}, notes=["n"])
    save_payload(payload, tmp_path / "job")
    back = load_payload(tmp_path / "job")
    assert np.array_equal(back.mesh["faces"], mesh["faces"]) and back.mesh["smooth"] is False
    assert back.textures == payload.textures and back.material == {"roughness_factor": 0.5}
    assert len(back.lods) == 1 and back.lods[0]["smooth"] is True and back.notes == ["n"]
    assert not list((tmp_path / "job").glob("*.tmp"))


def test_history_is_newest_first_and_survives_a_damaged_file(tmp_path: Path) -> None:
    history = History(tmp_path)
    assert history.load() == []
    history.add(HistoryEntry(job_id="a", name="chair", mode="full", state="done"))
    history.add(HistoryEntry(job_id="b", name="lamp", mode="full", state="failed", message="Bad."))
    assert [e.job_id for e in history.load()] == ["b", "a"]
    assert history.find("a") is not None and "chair" in history.find("a").label()  # type: ignore[union-attr]
    history.path.write_text("{not json", "utf-8")
    assert history.load() == []
    assert history.path.with_suffix(".damaged.json").exists()


def test_presets_validate_against_the_shared_schema(tmp_path: Path) -> None:
    store = PresetStore(tmp_path)
    assert set(BUILTIN_PRESETS) <= set(store.all_presets())
    store.save("Mine", {"steps": 20, "max_faces": 5000, "texture_size": 1024, "seed": 5})
    assert store.all_presets()["Mine"] == {"steps": 20, "max_faces": 5000, "texture_size": 1024}
    with pytest.raises(SettingsError):
        store.save("Bad", {"steps": 0})
    with pytest.raises(ValueError):
        store.save("Draft", {"steps": 20})  # built-ins are read-only
    json.loads(store.path.read_text("utf-8"))
    store.delete("Mine")
    assert "Mine" not in store.all_presets()


def test_png_encoder_matches_pillow() -> None:
    rgba = np.random.default_rng(0).integers(0, 255, size=(7, 5, 4), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(encode_png(rgba))))
    assert np.array_equal(back, rgba)
    # Blender pixels: floats, bottom row first.
    flipped = float_pixels_to_rgba8((rgba[::-1] / 255.0).ravel(), 5, 7, 4)
    assert np.array_equal(flipped, rgba)


def test_names() -> None:
    assert asset_name("/refs/chair_front.png") == "chair_front"
    assert asset_name("C:\\refs\\lamp.v2.jpg") == "lamp.v2"
    assert asset_name("") == "Step1X3D"
    assert texture_name("chair", "orm") == "chair_orm"
    assert wording.sentence("  server   failed ") == "Server failed."
    assert "--port 6000" in wording.offline("tcp://127.0.0.1:6000")


# -- the session, against a scripted connection ------------------------------------------------------


class FakeConnection:
    """Replays scripted events (one batch per poll); what the session sends is recorded in ``sent``."""

    address = "tcp://127.0.0.1:7"
    offline_after_s = 5.0
    welcome = None  # the real connection keeps the last welcome (its limits); not needed here

    def __init__(self, script: list[list[Any]]) -> None:
        self.script = script
        self.sent: list[tuple[str, Any]] = []
        self.closed = False

    def _record(self, kind: str, arg: Any = None) -> None:
        self.sent.append((kind, arg))

    def hello(self) -> None:
        self._record("hello")

    def submit(self, job_id: str, images: Any, settings: Any, **kw: Any) -> list[bytes]:
        self._record("submit", job_id)
        return [b"header", *images]  # the frames (the client session sends them with send_prepared)

    def send_prepared(self, frames: list[bytes]) -> None:
        pass

    def cancel(self, job_id: str) -> None:
        self._record("cancel", job_id)

    def fetch(self, job_id: str) -> None:
        self._record("fetch", job_id)

    def close_job(self, job_id: str) -> None:
        self._record("close_job", job_id)

    def attach(self, job_id: str) -> None:
        self._record("attach", job_id)

    def ping(self, token: str = "") -> None:
        self._record("ping", token)

    def seconds_since_last_message(self) -> float:
        return 0.0

    def poll(self, timeout_ms: int = 0) -> list[Any]:
        if not self.script:
            time.sleep(timeout_ms / 1000)
        return self.script.pop(0) if self.script else []

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.1
        return self.t


WELCOME = Welcome("0.1", (1, 0), {}, "test", {}, "cpu")


def _session(conn: FakeConnection, **kw: Any) -> JobSession:
    session = JobSession(lambda: conn, [b"png"], {"mode": "full"}, job_id="job1", image_names=["a.png"],
                         address="tcp://127.0.0.1:7", **kw)
    session.start()
    return session


def test_session_follows_a_job_to_its_result_and_closes_it_on_the_server() -> None:
    result = Result("job1", {"positions": None}, [], {}, {}, None, {}, {}, ["note"])
    conn = FakeConnection([
        [WELCOME, Accepted("job1", 0)],
        [Progress("job1", "geometry", 1, 4, 0.25, 3.0, "")],
        [StateChanged("job1", "done"), ResultReady("job1")],
        [result],
    ])
    session = _session(conn)
    views: list[Any] = []
    view = wait(session, poll_ms=0, progress=views.append)
    assert view.state == "done" and session.result is result and session.notes == ["note"]
    assert [s[0] for s in conn.sent] == ["hello", "submit", "fetch", "close_job"]
    running = next(v for v in views if v.state == "running")
    assert running.stage == "geometry" and running.progress_text() == "Geometry 25%, about 3 s left"
    assert session.server is not None and session.server.line() == "Connected: test on cpu"
    session.close()
    assert conn.closed


def test_session_reports_an_absent_server_within_the_timeout() -> None:
    conn = FakeConnection([])
    session = _session(conn, no_answer_s=0.3)
    view = wait(session, poll_ms=20)
    assert view.state == "failed" and view.message == wording.offline("tcp://127.0.0.1:7")


def test_cancel_ends_even_when_the_server_never_confirms() -> None:
    conn = FakeConnection([[WELCOME, Accepted("job1", 0)]])
    session = _session(conn, cancel_grace_s=0.2)
    session.step()
    session.cancel()
    view = wait(session, poll_ms=20)
    assert view.state == "cancelled" and view.message == "Cancelled."
    assert ("cancel", "job1") in conn.sent


def test_silence_mid_job_becomes_one_sentence_after_the_grace_period() -> None:
    conn = FakeConnection([[WELCOME, Accepted("job1", 0)], [Offline("tcp://127.0.0.1:7", 5.0)]])
    session = _session(conn, lost_after_s=0.3)
    session.step()
    waiting = session.step()
    assert waiting.state == "offline" and "waiting for it to answer again" in waiting.message
    view = wait(session, poll_ms=20)
    assert view.state == "failed" and "stopped answering" in view.message


def test_status_probe_reports_backend_device_and_queue() -> None:
    from blender_addon.client.events import Pong
    from blender_addon.core.probe import STATUS_TOKEN, StatusProbe

    conn = FakeConnection([[WELCOME], [Pong(STATUS_TOKEN, {"queued": 2, "running": "job9"})]])
    probe = StatusProbe(lambda: conn, "tcp://127.0.0.1:7", clock=Clock())
    probe.start()
    while not probe.finished:
        probe.step()
    assert probe.online and probe.line == "Connected: test on cpu, busy, 2 queued"
    assert ("ping", STATUS_TOKEN) in conn.sent and conn.closed

    offline = StatusProbe(lambda: FakeConnection([]), "tcp://127.0.0.1:7", timeout_s=1.0, clock=Clock())
    offline.start()
    while not offline.finished:
        offline.step()
    assert not offline.online and offline.line == wording.offline("tcp://127.0.0.1:7", wording.ADDON_ADDRESS_HINT)


def test_presets_carry_backend_options_and_read_older_files(tmp_path: Path) -> None:
    store = PresetStore(tmp_path)
    assert BUILTIN_PRESETS["Draft"]["options"] == {"inflate_depth": 0.5}  # the weight-free backend's option
    store.save("Styled", {"steps": 20, "options": {"lora": "ink", "lora_scale": 0.8}})
    assert store.all_presets()["Styled"] == {"steps": 20, "options": {"lora": "ink", "lora_scale": 0.8}}
    # A presets.json written by an older add-on: the knob at the top level becomes an option.
    store.path.write_text(json.dumps({"Old": {"steps": 30, "inflate_depth": 0.7}}), "utf-8")
    assert store.all_presets()["Old"] == {"steps": 30, "options": {"inflate_depth": 0.7}}
    with pytest.raises(SettingsError, match="options must be a map"):
        store.save("Bad", {"options": ["lora"]})

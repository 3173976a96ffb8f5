"""Submit -> progress -> result-ready -> fetch (repeatable) -> close, against a real server process."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from PIL import Image

from blender_addon.client import (
    Accepted,
    Closed,
    ErrorEvent,
    Pong,
    Progress,
    Rejected,
    Result,
    ResultReady,
    ServerConnection,
    StateChanged,
    VramFreed,
    Welcome,
)
from blender_addon.protocol.messages import PROTOCOL_VERSION
from blender_addon.protocol.settings import JobSettings

from .harness import collect, events_of, png_bytes
from .pipelines import checker, cube_mesh, scripted


def job_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def test_welcome_advertises_version_backend_and_limits(conn: ServerConnection) -> None:
    conn.hello()
    welcome = collect(conn, lambda e: isinstance(e, Welcome))[-1]
    assert welcome.protocol_version == PROTOCOL_VERSION
    assert welcome.active_backend == "test-scripted"
    caps = welcome.backends["test-scripted"]
    assert caps["modes"] == ["full", "geometry", "texture"] and caps["pbr"] is True
    assert welcome.device == "cpu"
    assert welcome.limits["max_frame_bytes"] == 1_048_576
    assert welcome.limits["max_images"] == 3
    assert welcome.limits["max_queue"] == 2
    assert welcome.settings["steps"] == {"type": "int", "min": 1, "max": 200}


def run_to_result(conn: ServerConnection, jid: str, settings: JobSettings, **submit_args: object) -> list:
    conn.submit(jid, [png_bytes()], settings, **submit_args)  # type: ignore[arg-type]
    events = collect(conn, lambda e: isinstance(e, ResultReady) and e.job_id == jid)
    conn.fetch(jid)
    events += collect(conn, lambda e: isinstance(e, Result) and e.job_id == jid)
    return events


def test_round_trip_with_progress(conn: ServerConnection) -> None:
    jid = job_id()
    events = run_to_result(conn, jid, JobSettings(seed=7), image_names=["front.png"])
    accepted = events_of(events, Accepted)
    assert accepted and accepted[0].job_id == jid and accepted[0].queue_position == 0
    states = [e.state for e in events_of(events, StateChanged)]
    assert states[-1] == "done" and "running" in states
    progress = events_of(events, Progress)
    assert [p.stage for p in progress][-1] == "texture"
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions), "overall fraction must never run backwards"
    # Stage weights geometry:3, texture:1 -> geometry 3/3 is 75% overall, texture 1/1 is 100%.
    assert fractions[-1] == pytest.approx(1.0)
    assert any(p.stage == "geometry" and p.step == 3 and p.fraction == pytest.approx(0.75) for p in progress)

    result = events[-1]
    cube = cube_mesh()
    np.testing.assert_array_equal(result.mesh["positions"], cube.positions)
    np.testing.assert_array_equal(result.mesh["faces"], cube.faces)
    np.testing.assert_array_equal(result.mesh["uvs"], cube.uvs)
    assert result.mesh["positions"].dtype == np.float32 and result.mesh["faces"].dtype == np.uint32
    assert result.mesh["smooth"] is True
    assert set(result.textures) == {"base_color", "orm", "normal"}
    base = np.array(Image.open(io.BytesIO(result.textures["base_color"])))
    np.testing.assert_array_equal(base, checker(64))
    assert result.material["maps"] == ["base_color", "orm", "normal"]
    assert result.material["roughness_factor"] == pytest.approx(0.8)
    assert result.provenance["seed"] == 7 and result.provenance["ai_generated"] is True
    assert result.provenance["image_shape"] == [32, 32, 4]
    assert result.notes == ["test cube"]
    assert result.glb is None
    assert "total" in result.timings and "encode" in result.timings

    # Fetch is repeatable and gives identical bytes.
    conn.fetch(jid)
    again = collect(conn, lambda e: isinstance(e, Result))[-1]
    assert again.textures == result.textures
    np.testing.assert_array_equal(again.mesh["normals"], result.mesh["normals"])

    conn.close_job(jid)
    collect(conn, lambda e: isinstance(e, Closed) and e.job_id == jid)
    conn.fetch(jid)
    err = collect(conn, lambda e: isinstance(e, ErrorEvent))[-1]
    assert err.job_id == jid and err.code == "unknown_job"


def test_resubmitting_the_same_id_never_runs_twice(conn: ServerConnection) -> None:
    jid = job_id()
    run_to_result(conn, jid, JobSettings(seed=1))
    conn.submit(jid, [png_bytes()], JobSettings(seed=1))
    events = collect(conn, lambda e: isinstance(e, ResultReady) and e.job_id == jid)
    assert events_of(events, Accepted)[0].queue_position == 0
    assert not events_of(events, Progress), "a resubmitted finished job must not run again"
    assert events_of(events, StateChanged)[0].state == "done"

    conn.submit(jid, [png_bytes()], JobSettings(seed=2))
    rejected = collect(conn, lambda e: isinstance(e, Rejected))[-1]
    assert rejected.code == "job_id_conflict"


def test_geometry_only_and_lods(conn: ServerConnection) -> None:
    jid = job_id()
    result = run_to_result(conn, jid, JobSettings(mode="geometry", lods=(1.0, 0.5, 0.25)))[-1]
    assert result.textures == {} and result.material == {}
    assert len(result.lods) == 2
    assert result.lods[1]["faces"].shape == (12, 3)


def test_texture_only_job_gets_the_clients_mesh_back(conn: ServerConnection) -> None:
    jid = job_id()
    positions = cube_mesh().positions * 2.0
    mesh = {"positions": positions, "faces": cube_mesh().faces}
    result = run_to_result(conn, jid, JobSettings(mode="texture"), mesh=mesh)[-1]
    np.testing.assert_array_equal(result.mesh["positions"], positions)


def test_glb_only_when_asked(conn: ServerConnection) -> None:
    jid = job_id()
    result = run_to_result(conn, jid, JobSettings(), want_glb=True)[-1]
    assert result.glb is not None and result.glb[:4] == b"glTF"


def test_ping_reports_status_and_free_vram_answers(conn: ServerConnection) -> None:
    conn.ping("abc")
    pong = collect(conn, lambda e: isinstance(e, Pong))[-1]
    assert pong.token == "abc"
    assert pong.status["worker_ready"] is True and pong.status["worker_pid"] > 0
    conn.free_vram()
    freed = collect(conn, lambda e: isinstance(e, VramFreed))[-1]
    assert freed.message == "memory released"


def test_unknown_jobs_and_not_ready(conn: ServerConnection) -> None:
    for send in (conn.attach, conn.fetch, conn.cancel, conn.close_job):
        send("never-submitted")
        err = collect(conn, lambda e: isinstance(e, ErrorEvent))[-1]
        assert (err.code, err.job_id) == ("unknown_job", "never-submitted")
    jid = job_id()
    conn.submit(jid, [png_bytes()], scripted("slow", steps=10))
    collect(conn, lambda e: isinstance(e, Progress))
    conn.fetch(jid)
    err = collect(conn, lambda e: isinstance(e, ErrorEvent))[-1]
    assert err.code == "not_ready"
    collect(conn, lambda e: isinstance(e, ResultReady))

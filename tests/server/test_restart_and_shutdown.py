"""Results survive a restart; SIGTERM stops cleanly; a backend that cannot load fails fast."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from blender_addon.client import (
    ErrorEvent,
    Progress,
    Rejected,
    Result,
    ResultReady,
    ServerConnection,
    ServerShutdown,
    StateChanged,
    Welcome,
)
from blender_addon.protocol.settings import JobSettings

from .harness import REPO, ServerProcess, collect, png_bytes, wait_ready
from .pipelines import scripted


def test_result_fetched_from_disk_after_restart(results_dir: Path) -> None:
    with ServerProcess(results_dir) as first:
        wait_ready(first.address)
        with ServerConnection(first.address) as conn:
            conn.submit("survivor", [png_bytes()], JobSettings(seed=5))
            collect(conn, lambda e: isinstance(e, ResultReady))
            conn.fetch("survivor")
            before = collect(conn, lambda e: isinstance(e, Result))[-1]
        status, err = first.stop()
        assert status == 0, err
    assert (results_dir / "survivor.result").is_file()
    assert not [p for p in results_dir.iterdir() if p.name.startswith(".tmp-")]

    with ServerProcess(results_dir) as second:
        with ServerConnection(second.address) as conn:
            conn.attach("survivor")
            events = collect(conn, lambda e: isinstance(e, ResultReady))
            assert [e.state for e in events if isinstance(e, StateChanged)] == ["done"]
            conn.fetch("survivor")
            after = collect(conn, lambda e: isinstance(e, Result))[-1]
            np.testing.assert_array_equal(after.mesh["positions"], before.mesh["positions"])
            assert after.textures == before.textures
            assert after.provenance["seed"] == 5
            # Resubmitting the recovered id is still idempotent: no second run.
            conn.submit("survivor", [png_bytes()], JobSettings(seed=5))
            again = collect(conn, lambda e: isinstance(e, ResultReady))
            assert not [e for e in again if isinstance(e, Progress)]


def test_sigterm_finishes_running_job_and_refuses_new_ones(results_dir: Path) -> None:
    server = ServerProcess(results_dir, "--shutdown-grace", "10")
    try:
        wait_ready(server.address)
        with ServerConnection(server.address) as conn:
            conn.submit("finishing", [png_bytes()], scripted("slow", steps=10))  # about 1 s
            collect(conn, lambda e: isinstance(e, Progress))
            server.proc.send_signal(signal.SIGTERM)
            notice = collect(conn, lambda e: isinstance(e, ServerShutdown))[-1]
            assert notice.deadline_s == 10.0
            conn.submit("too-late", [png_bytes()], JobSettings())
            rejected = collect(conn, lambda e: isinstance(e, Rejected))[-1]
            assert rejected.code == "shutting_down"
            collect(conn, lambda e: isinstance(e, ResultReady) and e.job_id == "finishing")
        status, err = server.stop(timeout_s=15)
        assert status == 0, err
        assert (results_dir / "finishing.result").is_file()
    finally:
        server.stop()


def test_sigterm_deadline_cancels_a_long_job(results_dir: Path) -> None:
    server = ServerProcess(results_dir, "--shutdown-grace", "0.5")
    try:
        wait_ready(server.address)
        with ServerConnection(server.address) as conn:
            conn.submit("long", [png_bytes()], scripted("slow", steps=200))
            collect(conn, lambda e: isinstance(e, Progress))
            server.proc.send_signal(signal.SIGTERM)
            end = collect(conn, lambda e: isinstance(e, StateChanged) and e.state in ("cancelled", "failed"))[-1]
            assert end.state == "cancelled"
        status, _ = server.stop(timeout_s=15)
        assert status == 0
    finally:
        server.stop()


def test_backend_that_cannot_load_fails_fast_with_one_line(results_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "inference_server.cli", "serve", "--port", "0", "--results-dir", str(results_dir),
         "--backend", "tests.server.pipelines:BrokenLoadPipeline", "--log-level", "ERROR"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "error: the backend could not start: the test backend has no weights"
    assert "Traceback" not in proc.stderr


def test_unknown_backend_fails_fast(results_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "inference_server.cli", "serve", "--port", "0", "--results-dir", str(results_dir),
         "--backend", "nonsense", "--log-level", "ERROR"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown backend 'nonsense'" in proc.stderr.strip().splitlines()[-1]


def test_expired_results_are_deleted(results_dir: Path) -> None:
    with ServerProcess(results_dir) as first:
        wait_ready(first.address)
        with ServerConnection(first.address) as conn:
            conn.submit("old", [png_bytes()], JobSettings())
            collect(conn, lambda e: isinstance(e, ResultReady))
    # A retention time of ~0 h: the restarted server deletes the stored result at start-up.
    with ServerProcess(results_dir, "--result-ttl-hours", "0.00001") as second:
        with ServerConnection(second.address) as conn:
            conn.fetch("old")
            err = collect(conn, lambda e: isinstance(e, ErrorEvent))[-1]
            assert (err.job_id, err.code) == ("old", "expired")
            conn.attach("old")
            state = collect(conn, lambda e: isinstance(e, StateChanged))[-1]
            assert (state.state, state.code) == ("expired", "expired")
    assert not (results_dir / "old.result").exists()


def test_inflate_backend_round_trip(results_dir: Path) -> None:
    from PIL import Image, ImageDraw
    import io

    img = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse((48, 32, 208, 224), fill=(220, 120, 40, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    with ServerProcess(results_dir, backend="inflate") as server:
        welcome = wait_ready(server.address, timeout_s=120)
        assert isinstance(welcome, Welcome) and welcome.active_backend == "inflate"
        with ServerConnection(server.address) as conn:
            conn.submit("blob", [buf.getvalue()], JobSettings(texture_size=512, max_faces=5000))
            events = collect(conn, lambda e: isinstance(e, (ResultReady, ErrorEvent))
                             or (isinstance(e, StateChanged) and e.state == "failed"), timeout_s=120)
            assert isinstance(events[-1], ResultReady), events[-3:]
            assert [e for e in events if isinstance(e, Progress)]
            conn.fetch("blob")
            result = collect(conn, lambda e: isinstance(e, Result), timeout_s=30)[-1]
    assert result.mesh["faces"].shape[0] > 100
    assert np.abs(result.mesh["positions"]).max() <= 1.01
    assert "base_color" in result.textures


def test_session_survives_a_server_crash_and_restart(results_dir: Path) -> None:
    """SIGKILL the server mid-job: the client reports offline, then re-attaches and resubmits to the new one."""
    import socket

    from blender_addon.client import JobSession

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first = ServerProcess(results_dir, port=port)
    second: ServerProcess | None = None
    conn = ServerConnection(first.address, heartbeat_s=0.2, offline_after_s=1.0)
    try:
        wait_ready(first.address)
        session = JobSession(conn, [png_bytes()], scripted("slow", steps=10), job_id="phoenix")
        session.start()
        deadline = time.monotonic() + 20
        while session.tracker.state != "running" and time.monotonic() < deadline:
            session.step(50)
        first.stop(sig=signal.SIGKILL)
        while session.tracker.state != "offline" and time.monotonic() < deadline:
            session.step(50)
        assert session.tracker.state == "offline"
        assert session.tracker.error == f"The Step1X-3D server at {first.address} went silent; waiting for it to answer again."
        second = ServerProcess(results_dir, port=port)
        while not session.tracker.finished and time.monotonic() < deadline + 20:
            session.step(50)
        assert session.tracker.state == "done", session.tracker.error
        assert session.tracker.result is not None and session.tracker.result.job_id == "phoenix"
    finally:
        conn.close()
        first.stop()
        if second is not None:
            second.stop()


def test_results_folder_removed_while_running_is_recreated(results_dir: Path) -> None:
    # Someone clears ~/.cache while the server runs: the next finished job used to fail on writing
    # its result (and the hourly expiry scan stopped the server); the folder is made again instead.
    import shutil

    with ServerProcess(results_dir) as server:
        wait_ready(server.address)
        shutil.rmtree(results_dir)
        with ServerConnection(server.address) as conn:
            conn.submit("after-rm", [png_bytes()], JobSettings())
            events = collect(conn, lambda e: isinstance(e, StateChanged) and e.state in ("done", "failed"), 15.0)
            assert events[-1].state == "done", events[-1]
            conn.fetch("after-rm")
            collect(conn, lambda e: isinstance(e, Result))
        status, err = server.stop()
        assert status == 0, err
    assert (results_dir / "after-rm.result").is_file()


def test_result_of_a_worker_killed_before_reporting_done_is_not_resurrected(results_dir: Path) -> None:
    # The worker writes the result file, then reports "done". Killed in between, the job ends failed
    # (worker_crashed); the file it left behind used to come back as "done" after a restart.
    with ServerProcess(results_dir) as first:
        wait_ready(first.address)
        with ServerConnection(first.address) as conn:
            conn.submit("ghost", [png_bytes()], scripted("die-after-write"))
            end = collect(conn, lambda e: isinstance(e, StateChanged) and e.state in ("done", "failed", "cancelled"))[-1]
            assert (end.state, end.code) == ("failed", "worker_crashed")
            conn.fetch("ghost")
            assert collect(conn, lambda e: isinstance(e, ErrorEvent))[-1].code == "not_ready"
            # The next job on a fresh worker still ends done, and its result survives the restart.
            conn.submit("after-ghost", [png_bytes()], JobSettings())
            collect(conn, lambda e: isinstance(e, ResultReady) and e.job_id == "after-ghost", 30.0)
        status, err = first.stop()
        assert status == 0, err
    # Neither a result nor a staged leftover: the job's end was decided (failed) when the worker died.
    assert sorted(p.name for p in results_dir.iterdir()) == ["after-ghost.result"]
    with ServerProcess(results_dir) as second, ServerConnection(second.address) as conn:
        conn.attach("ghost")
        reply = collect(conn, lambda e: isinstance(e, (ErrorEvent, StateChanged)))[-1]
        assert isinstance(reply, ErrorEvent) and reply.code == "unknown_job", reply
        conn.attach("after-ghost")
        assert collect(conn, lambda e: isinstance(e, StateChanged))[-1].state == "done"
    assert sorted(p.name for p in results_dir.iterdir()) == ["after-ghost.result"]

"""Faults found under chaos (issue 18) and messages that must be true (issue 11), each against real server processes.

Every test here failed before its fix: a restart the client never noticed, a full disk that left
partial files and said "internal_error", a wrong CURVE key reported as an absent server, a dead
server's message with the wrong time, a port in use said twice, a server that logged no job events
and a false shutdown line, and jobs that kept running for clients that were gone.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from blender_addon.client import (
    CurveKeys,
    JobFailed,
    JobSession,
    Progress,
    Pong,
    Reconnected,
    Rejected,
    ResultReady,
    ServerConnection,
    StateChanged,
    Welcome,
    run_job,
)
from blender_addon.protocol.settings import JobSettings
from inference_server.server.security import create_keypair

from .harness import REPO, ServerProcess, collect, png_bytes, wait_ready
from .pipelines import scripted

DISK_FULL = "tests.server.fault_pipelines:DiskFullPipeline"


def drive(session: JobSession, timeout_s: float) -> list[object]:
    """Step a session until its job ends (or ``timeout_s``); returns every event it saw."""
    seen: list[object] = []
    deadline = time.monotonic() + timeout_s
    while not session.tracker.finished and time.monotonic() < deadline:
        seen += session.poll(50)
    return seen


def test_a_server_restarted_within_the_offline_timeout_is_noticed_and_the_job_completes(results_dir: Path) -> None:
    first = ServerProcess(results_dir)
    port = int(first.address.rsplit(":", 1)[1])
    second: ServerProcess | None = None
    try:
        wait_ready(first.address)
        # An offline timeout far longer than the restart: only a new instance (or connection) can tell.
        with ServerConnection(first.address, offline_after_s=120.0) as conn:
            session = JobSession(conn, [png_bytes()], scripted("slow", steps=15))
            session.start()
            seen: list[object] = []
            while not any(isinstance(e, Progress) for e in seen):
                seen += session.poll(50)
                assert not session.tracker.finished, session.tracker.error
            first.stop(signal.SIGKILL)  # the job dies with it, unannounced
            second = ServerProcess(results_dir, port=port)
            seen = drive(session, timeout_s=60.0)
            assert session.tracker.state == "done", (session.tracker.state, session.tracker.error)
            assert session.tracker.result is not None and session.tracker.result.provenance["seed"] == 0
            assert [e for e in seen if isinstance(e, Reconnected)]
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_full_disk_fails_the_job_as_disk_full_and_leaves_no_partial_file(results_dir: Path) -> None:
    with ServerProcess(results_dir, backend=DISK_FULL) as server:
        welcome = wait_ready(server.address)
        assert welcome.min_free_bytes == 512 * 1024 * 1024  # the default threshold, advertised
        with ServerConnection(server.address) as conn:
            conn.submit("no-room", [png_bytes()], JobSettings())
            end = collect(conn, lambda e: isinstance(e, StateChanged) and e.state in ("done", "failed"))[-1]
    assert end.state == "failed" and end.code == "disk_full" and end.retryable
    assert str(results_dir) in end.message and "MiB" in end.message
    assert sorted(p.name for p in results_dir.iterdir()) == []  # no .tmp-, no .staged-, no result


def test_new_jobs_are_refused_while_free_space_is_under_the_threshold(results_dir: Path) -> None:
    # More free space than any disk has: the threshold, not a real full disk, refuses the job.
    with ServerProcess(results_dir, "--min-free-mib", str(2**40)) as server:
        wait_ready(server.address)
        with ServerConnection(server.address) as conn:
            conn.submit("refused", [png_bytes()], JobSettings())
            rejected = collect(conn, lambda e: isinstance(e, Rejected))[-1]
    assert rejected.code == "disk_full"
    assert str(results_dir) in rejected.message and "--min-free-mib" in rejected.message
    assert rejected.retry_after_s is not None and rejected.retry_after_s > 0


@pytest.fixture(scope="module")
def curve_server(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServerProcess, dict[str, Path]]:
    root = tmp_path_factory.mktemp("chaos-keys")
    _, server_secret = create_keypair(root / "server", "server")
    client_public, client_secret = create_keypair(root / "client", "laptop")
    create_keypair(root / "other", "other")
    allowed = root / "allowed"
    allowed.mkdir()
    (allowed / client_public.name).write_bytes(client_public.read_bytes())
    server = ServerProcess(root / "results", "--server-key", str(server_secret), "--allow-keys", str(allowed))
    keys = {"client_secret": client_secret, "server_public": root / "server" / "server.key",
            "wrong_server_public": root / "other" / "other.key"}
    yield server, keys
    server.stop()


def test_a_wrong_server_key_says_the_encrypted_handshake_failed(curve_server: tuple[ServerProcess, dict[str, Path]]) -> None:
    server, keys = curve_server
    wait_ready(server.address, curve=CurveKeys.load(keys["client_secret"], keys["server_public"]))
    wrong = CurveKeys.load(keys["client_secret"], keys["wrong_server_public"])
    with pytest.raises(JobFailed) as info:
        run_job(server.address, [png_bytes()], JobSettings(), curve=wrong, connect_timeout_s=30.0)
    assert info.value.code == "handshake_failed"
    assert "encrypted handshake" in str(info.value) and "--server-public-key" in str(info.value)
    assert server.address in str(info.value)


def test_no_encryption_against_a_curve_server_says_encryption_is_required(
    curve_server: tuple[ServerProcess, dict[str, Path]],
) -> None:
    server, _ = curve_server
    with pytest.raises(JobFailed) as info:
        run_job(server.address, [png_bytes()], JobSettings(), connect_timeout_s=30.0)
    assert info.value.code == "handshake_failed"
    assert "requires CURVE encryption" in str(info.value) and "--client-key" in str(info.value)


def test_the_dead_server_message_states_the_address_and_the_time_really_waited(results_dir: Path) -> None:
    server = ServerProcess(results_dir)
    try:
        wait_ready(server.address)
        running = threading.Event()
        outcome: list[BaseException] = []

        def client() -> None:
            try:
                run_job(server.address, [png_bytes()], scripted("slow", steps=200),
                        on_progress=lambda t: running.set() if t.state == "running" else None,
                        connect_timeout_s=2.0, offline_grace_s=1.0)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome.append(exc)

        thread = threading.Thread(target=client)
        thread.start()
        assert running.wait(30.0)
        killed = time.monotonic()
        server.stop(signal.SIGKILL)
        thread.join(60.0)
        waited = time.monotonic() - killed
    finally:
        server.stop()
    assert outcome and isinstance(outcome[0], JobFailed) and outcome[0].code == "offline"
    message = str(outcome[0])
    match = re.fullmatch(
        rf"The Step1X-3D server at {re.escape(server.address)} stopped answering during the job "
        r"\(silent for (\d+) s\); check that it is still running\.",
        message,
    )
    assert match, message
    # Silent for the offline timeout (2 s) and then the grace (1 s): at least 3 s, at most what passed.
    assert 3 <= int(match.group(1)) <= waited + 1


def test_a_port_in_use_is_said_once(results_dir: Path) -> None:
    with ServerProcess(results_dir) as first:
        port = first.address.rsplit(":", 1)[1]
        proc = subprocess.run(
            [sys.executable, "-m", "inference_server.cli", "serve", "--port", port, "--results-dir", str(results_dir),
             "--backend", "tests.server.pipelines:FastPipeline", "--log-level", "ERROR"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: port {port} on 127.0.0.1 is already in use (another server?); stop that one or pass another --port"]


def job_lines(stderr: str) -> list[str]:
    return [line.split("step1x3d.server: ", 1)[1] for line in stderr.splitlines() if "step1x3d.server: " in line]


def test_serve_logs_one_line_per_job_event_and_nothing_false_at_shutdown(results_dir: Path) -> None:
    server = ServerProcess(results_dir, "--log-level", "INFO")
    try:
        wait_ready(server.address)
        with ServerConnection(server.address, client_name="log-test") as conn:
            conn.hello()
            collect(conn, lambda e: isinstance(e, Welcome))
            conn.submit("ok-job", [png_bytes()], JobSettings())
            collect(conn, lambda e: isinstance(e, ResultReady))
            conn.submit("bad-job", [png_bytes()], scripted("fail"))
            collect(conn, lambda e: isinstance(e, StateChanged) and e.state == "failed")
            conn.submit("stop-job", [png_bytes()], scripted("slow", steps=200))
            collect(conn, lambda e: isinstance(e, Progress))
            conn.cancel("stop-job")
            collect(conn, lambda e: isinstance(e, StateChanged) and e.state == "cancelled")
        status, err = server.stop()
    finally:
        server.stop()
    assert status == 0, err
    lines = job_lines(err)
    for job in ("ok-job", "bad-job", "stop-job"):
        mine = [line for line in lines if line.startswith(f"job {job} ")]
        assert len(mine) == 3, mine
        assert re.fullmatch(rf"job {job} accepted from log-test \([0-9a-f]+\) \(0 ahead\)", mine[0]), mine[0]
        assert re.fullmatch(rf"job {job} started \(client log-test \([0-9a-f]+\)\)", mine[1]), mine[1]
    ends = {line.split()[1]: line for line in lines if " after running " in line}
    assert re.fullmatch(r"job ok-job done after running \d+\.\d s \(client log-test \([0-9a-f]+\)\)", ends["ok-job"])
    assert re.fullmatch(
        r"job bad-job failed after running \d+\.\d s \(bad_mesh: the test pipeline failed on purpose\) "
        r"\(client log-test \([0-9a-f]+\)\)", ends["bad-job"])
    assert re.fullmatch(r"job stop-job cancelled after running \d+\.\d s \(client log-test \([0-9a-f]+\)\)", ends["stop-job"])
    assert "shutting down: no job is running" in lines
    assert not [line for line in lines if "has" in line and "to finish" in line]  # no running job to wait for


def wait_until_idle(address: str, timeout_s: float = 30.0) -> None:
    """Ping (without attaching to anything) until the server runs no job."""
    with ServerConnection(address) as watcher:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            watcher.ping("idle?")
            pong = collect(watcher, lambda e: isinstance(e, Pong) and e.token == "idle?")[-1]
            if not pong.status.get("running"):
                return
            time.sleep(0.2)
    raise AssertionError("the server kept running the job")


def test_a_job_whose_client_is_gone_is_cancelled_after_the_orphan_grace(results_dir: Path) -> None:
    with ServerProcess(results_dir, "--orphan-grace", "1") as server:
        assert wait_ready(server.address).orphan_grace_s == 1.0
        with ServerConnection(server.address) as gone:
            gone.submit("orphan", [png_bytes()], scripted("slow", steps=200))  # 20 s if left alone
            collect(gone, lambda e: isinstance(e, Progress))
        wait_until_idle(server.address)
        with ServerConnection(server.address) as later:
            later.attach("orphan")
            state = collect(later, lambda e: isinstance(e, StateChanged))[-1]
    assert state.state == "cancelled"
    assert "--orphan-grace" in state.message and "discarded" in state.message
    assert not (results_dir / "orphan.result").exists()


def test_a_client_that_reconnects_within_the_orphan_grace_keeps_its_job(results_dir: Path) -> None:
    with ServerProcess(results_dir, "--orphan-grace", "5") as server:
        wait_ready(server.address)
        with ServerConnection(server.address) as first:
            first.submit("kept", [png_bytes()], scripted("slow", steps=20))
            collect(first, lambda e: isinstance(e, Progress))
        with ServerConnection(server.address) as again:
            again.attach("kept")
            end = collect(again, lambda e: isinstance(e, StateChanged) and e.state in ("done", "cancelled"), 30.0)[-1]
    assert end.state == "done"
    assert (results_dir / "kept.result").is_file()


def test_a_restart_is_reported_once_and_the_new_instance_is_known(results_dir: Path) -> None:
    first = ServerProcess(results_dir)
    port = int(first.address.rsplit(":", 1)[1])
    second: ServerProcess | None = None
    try:
        with ServerConnection(first.address, offline_after_s=120.0) as conn:
            conn.hello()
            old = collect(conn, lambda e: isinstance(e, Welcome))[-1].instance_id
            assert conn.server_instance == old and len(old) == 16
            first.stop(signal.SIGKILL)
            second = ServerProcess(results_dir, port=port)
            seen = collect(conn, lambda e: isinstance(e, Reconnected), timeout_s=30.0)
            conn.hello()
            seen += collect(conn, lambda e: isinstance(e, Welcome))
            new = [e for e in seen if isinstance(e, Welcome)][-1].instance_id
            # Seen by the socket monitor (new handshake) and by the new instance id: reported once.
            assert len([e for e in seen if isinstance(e, Reconnected)]) == 1, seen
            assert new != old and conn.server_instance == new
    finally:
        first.stop()
        if second is not None:
            second.stop()

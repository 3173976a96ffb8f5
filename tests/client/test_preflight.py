"""Jobs over the server's advertised limits are refused by the client, before anything is sent.

A real server on loopback with small limits (``--limit``), so oversize jobs are cheap to build.
Without the preflight such a job reached the server and was cut off (a frame above its
MAXMSGSIZE drops the connection) or answered with an error that names no job: the client
waited, then called a running server "offline".
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from blender_addon.client import (
    Accepted,
    ErrorEvent,
    JobFailed,
    JobSession,
    Pong,
    Rejected,
    ServerConnection,
    SubmitRefused,
    Welcome,
    run_job,
)
from blender_addon.protocol.limits import Limits, MiB
from blender_addon.protocol.settings import JobSettings
from tests.server.harness import ServerProcess, collect, png_bytes, running_server

LIMITS = {
    "max_frame_bytes": MiB,
    "max_total_bytes": 2 * MiB,
    "max_images": 3,
    "max_mesh_vertices": 1000,
    "max_mesh_faces": 1000,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = [arg for name, value in LIMITS.items() for arg in ("--limit", f"{name}={value}")]
    yield from running_server(tmp_path_factory.mktemp("preflight-results"), *args)


@pytest.fixture
def conn(server: ServerProcess) -> Iterator[ServerConnection]:
    with ServerConnection(server.address) as connection:
        yield connection


def welcomed(conn: ServerConnection) -> ServerConnection:
    conn.hello()
    collect(conn, lambda e: isinstance(e, Welcome))
    return conn


def jid() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


def padded_png(size: int) -> bytes:
    """A valid PNG followed by padding (never sent in these tests: only its size matters)."""
    data = png_bytes()
    return data + b"\0" * (size - len(data))


def assert_server_never_heard_of(conn: ServerConnection, job_id: str) -> None:
    conn.attach(job_id)
    error = collect(conn, lambda e: isinstance(e, ErrorEvent) and e.job_id == job_id)[-1]
    assert isinstance(error, ErrorEvent) and error.code == "unknown_job"


def test_a_job_over_the_total_is_refused_locally_and_the_connection_stays_usable(conn: ServerConnection) -> None:
    welcomed(conn)
    job = jid()
    images = [padded_png(900 * 1024)] * 3  # each within the 1 MiB frame limit, 2.6 MiB together
    with pytest.raises(SubmitRefused) as info:
        conn.submit(job, images, JobSettings(), image_names=["front.png", "right.png", "back.png"])
    assert (info.value.code, info.value.job_id) == ("too_large", job)
    assert str(info.value) == (
        "The job is 2.6 MB in total (images 2.6 MB); this server accepts up to 2 MB per job: "
        "use fewer or smaller images (JPEG)."
    )
    # Nothing was sent: the server answers pings, never heard of the job, and runs the next one.
    conn.ping("after")
    pong = collect(conn, lambda e: isinstance(e, Pong))[-1]
    assert isinstance(pong, Pong) and pong.token == "after"
    assert_server_never_heard_of(conn, job)
    ok = jid()
    conn.submit(ok, [png_bytes()], JobSettings())
    accepted = collect(conn, lambda e: isinstance(e, (Accepted, Rejected)) and e.job_id == ok)[-1]
    assert isinstance(accepted, Accepted), accepted
    conn.cancel(ok)


def test_too_many_images_an_oversize_image_and_an_oversize_mesh_are_refused_locally(conn: ServerConnection) -> None:
    welcomed(conn)
    with pytest.raises(SubmitRefused, match="^The job has 4 reference images; this server accepts up to 3 per job"):
        conn.submit(jid(), [png_bytes()] * 4, JobSettings())
    with pytest.raises(SubmitRefused, match=r"^front\.png is 1\.5 MB; this server accepts images up to 1 MB per file"):
        conn.submit(jid(), [padded_png(3 * MiB // 2)], JobSettings(), image_names=["front.png"])
    big = {"positions": np.zeros((1001, 3), np.float32), "faces": np.zeros((10, 3), np.uint32)}
    job = jid()
    with pytest.raises(SubmitRefused, match="^The mesh has 1,001 vertices; this server accepts up to 1,000: decimate"):
        conn.submit(job, [png_bytes()], JobSettings(mode="texture"), mesh=big)
    assert_server_never_heard_of(conn, job)


def test_the_limits_of_the_last_welcome_apply_and_the_defaults_before_one(conn: ServerConnection) -> None:
    assert conn.limits == Limits()
    # Before the welcome, 4 images pass the client (the default is 8): the server refuses them itself.
    early = jid()
    conn.submit(early, [png_bytes()] * 4, JobSettings())
    rejected = collect(conn, lambda e: isinstance(e, Rejected) and e.job_id == early)[-1]
    assert isinstance(rejected, Rejected) and rejected.code == "too_large"
    welcome = welcomed(conn).welcome
    assert welcome is not None and conn.limits == Limits().with_overrides(LIMITS)
    with pytest.raises(SubmitRefused, match="accepts up to 3 per job"):
        conn.submit(jid(), [png_bytes()] * 4, JobSettings())


def test_run_job_waits_for_the_servers_limits_and_fails_at_once_with_the_sentence(server: ServerProcess) -> None:
    with pytest.raises(JobFailed) as info:  # a fresh connection: the session waits for the welcome
        run_job(server.address, [padded_png(3 * MiB // 2)], JobSettings(), image_names=["chair.png"],
                connect_timeout_s=5.0)
    assert (info.value.code, info.value.state) == ("too_large", "failed")
    assert str(info.value) == (
        "chair.png is 1.5 MB; this server accepts images up to 1 MB per file: "
        "save it as JPEG (or 8-bit PNG) or scale it down."
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_session_sends_nothing_before_the_welcome_and_a_cancel_then_ends_it() -> None:
    with ServerConnection(f"tcp://127.0.0.1:{free_port()}", offline_after_s=0.5) as conn:  # nobody listens
        session = JobSession(conn, [png_bytes()], JobSettings())
        session.start()
        session.step(10)
        assert session.tracker.state == "connecting"
        session.cancel()
        assert session.tracker.state == "cancelled" and session.tracker.error == "Cancelled."


def test_a_client_without_preflight_still_sees_its_oversize_job_fail(server: ServerProcess) -> None:
    # An older client sends what it is given; the server's size refusal names the job.
    from blender_addon.protocol.codec import encode

    with ServerConnection(server.address) as conn:
        welcomed(conn)
        frames = encode("submit", {"job_id": "old-client-1", "settings": JobSettings().to_wire(), "want_glb": False},
                        [("image0", b"\x89PNG" + bytes(int(1.5 * MiB)))])  # over the 1 MiB frame limit
        conn._send_frames(frames)
        error = collect(conn, lambda e: isinstance(e, ErrorEvent))[-1]
        assert (error.code, error.job_id) == ("too_large", "old-client-1")
        assert "limit" in error.message

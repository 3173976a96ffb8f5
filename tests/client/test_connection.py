"""ServerConnection without a server: poll never blocks, close never hangs, absence is reported."""

from __future__ import annotations

import socket
import time

import pytest
import zmq

from blender_addon.client import JobFailed, Offline, ServerConnection, run_job
from blender_addon.client.curve import CurveKeyError, CurveKeys
from blender_addon.protocol.errors import Step1X3DError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_poll_zero_returns_at_once_and_close_does_not_hang() -> None:
    conn = ServerConnection(f"tcp://127.0.0.1:{free_port()}", offline_after_s=0.5)
    conn.hello()
    conn.submit("job1", [b"\x89PNG" + b"\0" * 1_000_000], {"seed": 1})  # unsent: nobody listens
    for _ in range(100):
        assert conn.poll(0) == []
    # Nothing waits: the socket's LINGER is 0, so unsent data is dropped at close.
    assert conn._socket.getsockopt(zmq.LINGER) == 0  # type: ignore[attr-defined]
    conn.close()
    assert conn.poll(0) == [] and conn.closed


def test_silence_is_reported_once_as_offline() -> None:
    conn = ServerConnection(f"tcp://127.0.0.1:{free_port()}", offline_after_s=0.4, heartbeat_s=0.1)
    try:
        events = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            events += conn.poll(50)
        offline = [e for e in events if isinstance(e, Offline)]
        assert len(offline) == 1 and offline[0].silent_s >= 0.4
        assert conn.seconds_since_last_message() >= 1.0
    finally:
        conn.close()


def test_run_job_without_server_fails_with_the_fix() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(JobFailed) as info:
        run_job(address, [b"x"], {}, connect_timeout_s=1.0)
    assert info.value.code == "offline"
    port = address.rsplit(":", 1)[1]
    assert str(info.value) == (f"No Step1X-3D server answers at {address}: start one with 'step1x3d serve --port {port}' "
                               "or fix the address.")


def test_submit_refuses_unsafe_job_ids() -> None:
    with ServerConnection(f"tcp://127.0.0.1:{free_port()}") as conn:
        with pytest.raises(Step1X3DError, match="job id") as info:
            conn.submit("../etc", [b"x"], {})
    assert info.value.code == "bad_job_id"


def test_curve_keys_missing_file_is_one_sentence(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(CurveKeyError, match="does not exist"):
        CurveKeys.load(tmp_path / "nope.key_secret", tmp_path / "server.key")


def test_addresses_are_normalised_and_bad_ones_refused() -> None:
    port = free_port()
    with ServerConnection(f"127.0.0.1:{port}") as conn:
        assert conn.address == f"tcp://127.0.0.1:{port}"
    with pytest.raises(ValueError, match="is not a valid server address"):
        ServerConnection("tcp://no host")

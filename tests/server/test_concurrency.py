"""Several clients at once: each gets its own result; a full queue says busy and the session waits it out."""

from __future__ import annotations

import time

import numpy as np

from blender_addon.client import JobSession, ServerConnection

from .harness import ServerProcess, png_bytes
from .pipelines import scripted


def test_concurrent_clients_each_get_their_own_result(shared_server: ServerProcess) -> None:
    clients = [ServerConnection(shared_server.address) for _ in range(5)]
    try:
        sessions = [
            JobSession(conn, [png_bytes(color=(10 * i, 0, 0))], scripted("slow", seed=i, steps=3),
                       job_id=f"c{i}-{time.monotonic_ns()}", retry_busy_until=time.monotonic() + 60)
            for i, conn in enumerate(clients)
        ]
        for session in sessions:
            session.start()
        busy_seen = False
        deadline = time.monotonic() + 60
        while not all(s.tracker.finished for s in sessions) and time.monotonic() < deadline:
            for session in sessions:
                for event in session.poll(5):
                    busy_seen |= getattr(event, "code", "") == "busy"
        assert all(s.tracker.state == "done" for s in sessions), [s.tracker.error for s in sessions]
        # 5 clients, one running + a queue of 2: some had to wait out "busy" and resubmit.
        assert busy_seen
        for i, session in enumerate(sessions):
            result = session.tracker.result
            assert result is not None and result.job_id == session.job_id
            assert result.provenance["seed"] == i
            assert result.mesh["faces"].shape == (12, 3)
            assert np.isfinite(result.mesh["positions"]).all()
    finally:
        for conn in clients:
            conn.close()

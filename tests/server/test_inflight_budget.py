"""Concurrent large uploads stay within one server-wide byte budget (issue 18).

The size limits are per message, so N clients uploading at once made the server hold N messages
(four 150 MiB submits took it to 600 MiB). Now a session announces a submit above
``welcome.reserve_above_bytes`` with ``reserve`` and uploads only once the server answered
``reserved``; the server holds room for queued jobs and announced uploads together within
``max_queue_bytes``, and answers the rest ``busy`` (the session waits and asks again: no job is lost).

Measured as bytes, not time: the server process's peak resident memory (``VmHWM``) grows by about
the budget plus one upload being handed to the worker, not by the sum of the uploads
(measured: +17 MiB with six 16 MiB uploads and a 20 MiB budget; +91 MiB without reservations).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from blender_addon.client import JobSession, ServerConnection

from .harness import ServerProcess, wait_ready
from .test_flood import big_png, vm_kib
from .pipelines import scripted

MiB = 1024 * 1024
PEERS = 6
SIDE = 2048  # an uncompressed RGBA PNG of about 16 MiB
BUDGET_MIB = 20


@pytest.mark.slow  # six jobs go through one after another behind "busy" answers: 15-30 s on a loaded 2-core machine
def test_concurrent_large_uploads_are_bounded_by_the_budget_and_all_complete(results_dir: Path) -> None:
    image = big_png(SIDE)
    image_mib = len(image) / MiB
    server = ServerProcess(results_dir, "--limit", f"max_queue_bytes={BUDGET_MIB * MiB}")
    connections = [ServerConnection(server.address) for _ in range(PEERS)]
    try:
        wait_ready(server.address)
        before = vm_kib(server.pid, "VmRSS")
        sessions = [
            JobSession(conn, [image], scripted("slow", steps=1, seed=i), retry_busy_until=time.monotonic() + 300)
            for i, conn in enumerate(connections)
        ]
        for session in sessions:
            session.start()
        deadline = time.monotonic() + 300
        while not all(s.tracker.finished for s in sessions) and time.monotonic() < deadline:
            for session in sessions:
                if not session.tracker.finished:
                    session.step(10)
        peak = vm_kib(server.pid, "VmHWM")
    finally:
        for conn in connections:
            conn.close()
        server.stop()
    assert [s.tracker.state for s in sessions] == ["done"] * PEERS, [s.tracker.error for s in sessions]
    growth_mib = (peak - before) / 1024
    # Without the budget all six uploads (about 96 MiB) were held at once. With it: the budget,
    # plus the upload being handed to the worker, plus allocator slack.
    assert growth_mib < BUDGET_MIB + image_mib + 16, (growth_mib, image_mib)

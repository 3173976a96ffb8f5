"""A lost Ray cluster: the gateway says so (``busy`` with a retry hint) and recovers when it returns.

Its own one-node cluster on a fixed port, shut down and started again on that port mid-test
(real Ray processes; only this test's own cluster is stopped).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray.serve")

from blender_addon.client import ErrorEvent, Progress, Rejected, ResultReady, ServerConnection, StateChanged  # noqa: E402
from blender_addon.protocol.settings import JobSettings  # noqa: E402
from tests.server.harness import collect, png_bytes, wait_ready  # noqa: E402

from .harness import GATEWAY_READY_S, free_port, ray_gateway, start_cluster, write_config  # noqa: E402
from tests.server.pipelines import scripted  # noqa: E402

JOB_TIMEOUT_S = 120.0


def start_head(port: int) -> Any:
    return start_cluster(nodes=1, gcs_port=port)


def submit_until(conn: ServerConnection, settings: JobSettings, accepted: bool, timeout_s: float) -> object:
    """Submit fresh jobs until the answer is (not) a rejection; returns that last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        jid = f"l-{uuid.uuid4().hex[:10]}"
        conn.submit(jid, [png_bytes()], settings)
        answer = collect(conn, lambda e: isinstance(e, (Rejected, StateChanged)) and e.job_id == jid)[-1]
        if isinstance(answer, Rejected) != accepted or time.monotonic() > deadline:
            return answer
        time.sleep(1.0)


@pytest.mark.slow  # starts a Ray cluster twice (about 20 s each on a loaded 2-core machine)
def test_lost_cluster_answers_busy_with_retry_after_and_recovers(tmp_path: Path) -> None:
    port = free_port()
    cluster = start_head(port)
    address = cluster.address
    config = write_config(tmp_path / "serve.yaml", "loss", {"backend": "tests.server.pipelines:ScriptedPipeline"},
                          replicas=1, cpus=0.5)
    gateway = ray_gateway(tmp_path / "results", address, config)
    try:
        wait_ready(gateway.address, timeout_s=GATEWAY_READY_S)
        with ServerConnection(gateway.address) as conn:
            jid = "l-inflight"
            conn.submit(jid, [png_bytes()], scripted("slow", steps=200))
            collect(conn, lambda e: isinstance(e, Progress) and e.job_id == jid, timeout_s=JOB_TIMEOUT_S)

            cluster.shutdown()
            cluster = None
            ended = collect(conn, lambda e: isinstance(e, StateChanged) and e.job_id == jid and e.state == "failed",
                            timeout_s=60.0)[-1]
            assert ended.retryable is True and "Ray" in ended.message

            busy = submit_until(conn, JobSettings(), accepted=False, timeout_s=60.0)
            assert isinstance(busy, Rejected), busy
            assert busy.code == "busy" and busy.retry_after_s is not None and busy.retry_after_s > 0
            assert "unreachable" in busy.message

            cluster = start_head(port)
            back = submit_until(conn, JobSettings(seed=2), accepted=True, timeout_s=GATEWAY_READY_S)
            assert isinstance(back, StateChanged), back
            done = collect(conn, lambda e: isinstance(e, (ResultReady, ErrorEvent)) and e.job_id == back.job_id,
                           timeout_s=JOB_TIMEOUT_S)[-1]
            assert isinstance(done, ResultReady)
    finally:
        gateway.stop()
        if cluster is not None:
            cluster.shutdown()

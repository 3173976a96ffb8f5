"""``step1x3d serve --engine ray`` against a real two-node Ray cluster on this machine.

One cluster for the module (head + second node, one CPU each, no dashboard). The Serve
application runs the scripted test pipeline on two replicas, one per node; every replica writes
its own job records (``records_dir``), which the tests read to see where and how jobs ran.
Nothing is mocked: gateways are ``step1x3d serve`` processes, replicas are Ray actors, jobs
cross the cluster through deployment handles.
"""

from __future__ import annotations

import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("ray.serve")

from blender_addon.client import (  # noqa: E402
    ErrorEvent,
    Progress,
    Rejected,
    Result,
    ResultReady,
    ServerConnection,
    StateChanged,
)
from blender_addon.protocol.settings import JobSettings  # noqa: E402
from tests.server.conftest import SHARED_LIMITS  # noqa: E402
from tests.server.harness import ServerProcess, collect, png_bytes, wait_ready  # noqa: E402

# The protocol round-trip tests, unchanged, collected here against the Ray gateway (fixture ``conn``).
from tests.server.test_roundtrip import *  # noqa: E402,F401,F403

from .harness import (  # noqa: E402
    GATEWAY_READY_S,
    free_port,
    ray_gateway,
    records,
    running_gateway,
    start_cluster,
    stop_cluster,
    wait_all,
    write_config,
)
from tests.server.pipelines import EXPORT_FAILED_SENTENCE, scripted  # noqa: E402

PIPELINE = "tests.scale.pipelines:CrashOncePipeline"
JOB_TIMEOUT_S = 120.0


@dataclass
class Scale:
    address: str
    config: Path
    records: Path
    markers: Path


@pytest.fixture(scope="module")
def scale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scale]:
    root = tmp_path_factory.mktemp("scale")
    (root / "markers").mkdir()
    args = {"backend": PIPELINE, "records_dir": str(root / "records"), "options": {"marker_dir": str(root / "markers")}}
    config = write_config(root / "serve.yaml", "scripted", args, replicas=2)
    cluster = start_cluster()
    try:
        yield Scale(cluster.address, config, root / "records", root / "markers")
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="module")
def shared_server(scale: Scale, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_gateway(tmp_path_factory.mktemp("ray-results"), scale.address, scale.config, *SHARED_LIMITS)


@pytest.fixture
def conn(shared_server: ServerProcess) -> Iterator[ServerConnection]:
    connection = ServerConnection(shared_server.address)
    try:
        yield connection
    finally:
        connection.close()


def new_id(prefix: str = "r") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def records_of(scale: Scale, job_ids: set[str], count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The replicas' records of these jobs, once ``count`` of them are written (a replica records when its job ends)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [r for r in records(scale.records) if r["job_id"] in job_ids]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def finish(conn: ServerConnection, job_id: str) -> list[Any]:
    return collect(conn, lambda e: isinstance(e, (ResultReady, ErrorEvent, Rejected)) and e.job_id == job_id
                   or isinstance(e, StateChanged) and e.job_id == job_id and e.state in ("failed", "cancelled"),
                   timeout_s=JOB_TIMEOUT_S)


def test_welcome_names_the_ray_engine_and_its_slots(conn: ServerConnection) -> None:
    from blender_addon.client import Welcome

    conn.hello()
    welcome = collect(conn, lambda e: isinstance(e, Welcome))[-1]
    engine = welcome.backends["test-scripted"]["engine"]
    assert engine == {"kind": "ray", "application": "scripted", "deployments": ["WeightFree"], "slots": 2}


def test_eight_jobs_from_four_clients_spread_over_both_replicas(scale: Scale, tmp_path: Path) -> None:
    for server in running_gateway(tmp_path / "results", scale.address, scale.config):
        clients = [ServerConnection(server.address) for _ in range(4)]
        try:
            jobs = {c: [new_id("s") for _ in range(2)] for c in clients}
            for c, ids in jobs.items():
                for i, jid in enumerate(ids):
                    c.submit(jid, [png_bytes()], scripted("slow", steps=3, seed=i))
            ends = wait_all(clients, {jid for ids in jobs.values() for jid in ids}, JOB_TIMEOUT_S)
            assert all(isinstance(e, ResultReady) for e in ends.values()), ends
        finally:
            for c in clients:
                c.close()
    all_ids = {jid for ids in jobs.values() for jid in ids}
    found = records_of(scale, all_ids, 8)
    assert sorted(r["job_id"] for r in found) == sorted(all_ids), "every job ran exactly once"
    assert {r["outcome"] for r in found} == {"result"}
    by_replica: dict[str, list[dict[str, Any]]] = {}
    for r in found:
        by_replica.setdefault(r["replica"], []).append(r)
    assert len(by_replica) == 2, {k: len(v) for k, v in by_replica.items()}
    assert len({rs[0]["node"] for rs in by_replica.values()}) == 2, "one replica per node"
    for runs in by_replica.values():  # max_ongoing_requests 1: a replica never ran two jobs at once
        runs.sort(key=lambda r: r["start"])
        assert all(a["end"] <= b["start"] for a, b in zip(runs, runs[1:]))


def test_cancel_mid_job_stops_the_replica_between_steps(scale: Scale, conn: ServerConnection) -> None:
    jid = new_id("c")
    conn.submit(jid, [png_bytes()], scripted("slow", steps=60))
    collect(conn, lambda e: isinstance(e, Progress) and e.job_id == jid and e.step >= 2, timeout_s=JOB_TIMEOUT_S)
    conn.cancel(jid)
    state = collect(conn, lambda e: isinstance(e, StateChanged) and e.job_id == jid and e.state not in ("queued", "running"))[-1]
    assert state.state == "cancelled"
    (record,) = records_of(scale, {jid}, 1)
    assert record["outcome"] == "cancelled"
    stage, step, total = record["last_progress"]
    assert stage == "geometry" and 2 <= step < total == 60, "the pipeline stopped between steps, well before its end"


def test_a_step1x3d_error_in_a_replica_reaches_the_client_with_its_own_code_and_sentence(conn: ServerConnection) -> None:
    jid = new_id("e")
    conn.submit(jid, [png_bytes()], scripted("export-failed"))  # raises Step1X3DError(..., "export_failed")
    failed = [e for e in finish(conn, jid) if isinstance(e, StateChanged) and e.state == "failed"]
    assert failed and (failed[-1].code, failed[-1].message, failed[-1].retryable) == (
        "export_failed", EXPORT_FAILED_SENTENCE, False)


def test_replica_killed_mid_job_fails_it_retryable_and_the_next_job_runs(conn: ServerConnection) -> None:
    jid = new_id("k")
    conn.submit(jid, [png_bytes()], scripted("crash"))  # the replica process exits mid-job
    events = finish(conn, jid)
    failed = [e for e in events if isinstance(e, StateChanged) and e.state == "failed"]
    assert failed, events
    assert failed[-1].code == "worker_crashed" and failed[-1].retryable is True
    assert "Ray replica running the job died" in failed[-1].message
    after = new_id("k")
    conn.submit(after, [png_bytes()], JobSettings(seed=5))
    assert isinstance(finish(conn, after)[-1], ResultReady)


def test_ray_retries_runs_a_job_again_when_its_replica_dies(scale: Scale, tmp_path: Path) -> None:
    for server in running_gateway(tmp_path / "results", scale.address, scale.config, "--ray-retries", "1"):
        with ServerConnection(server.address) as c:
            jid = new_id("t")
            c.submit(jid, [png_bytes()], scripted("crash-once", seed=4242))
            events = finish(c, jid)
            assert isinstance(events[-1], ResultReady), events
            assert not [e for e in events if isinstance(e, StateChanged) and e.state == "failed"]
            c.fetch(jid)
            result = collect(c, lambda e: isinstance(e, Result) and e.job_id == jid)[-1]
    assert (scale.markers / "crashed-seed-4242").exists(), "the first attempt did kill its replica"
    assert result.provenance["seed"] == 4242 and result.mesh["faces"].shape == (12, 3)


def test_gateway_restarted_with_jobs_in_flight(scale: Scale, tmp_path: Path) -> None:
    port = free_port()
    results = tmp_path / "results"
    first = ray_gateway(results, scale.address, scale.config, port=port)
    ids = [new_id("g"), new_id("g")]
    try:
        wait_ready(first.address, timeout_s=GATEWAY_READY_S)
        with ServerConnection(first.address) as c:
            for jid in ids:
                # 200 steps (20 s): long enough that neither job ends on its own before the kill, even when
                # the second replica starts its job seconds after the first under load (40 steps did not).
                c.submit(jid, [png_bytes()], scripted("slow", steps=200))
            seen: set[str] = set()
            collect(c, lambda e: isinstance(e, Progress) and (seen.add(e.job_id) or len(seen) == 2), timeout_s=JOB_TIMEOUT_S)
    finally:
        first.stop(signal.SIGKILL)
    # The killed gateway's bridge cancels what it dispatched, so the replicas are free again.
    cancelled = records_of(scale, set(ids), 2)
    assert sorted(r["job_id"] for r in cancelled) == sorted(ids) and {r["outcome"] for r in cancelled} == {"cancelled"}
    for server in running_gateway(results, scale.address, scale.config, port=port):
        with ServerConnection(server.address) as c:
            c.attach(ids[0])
            assert collect(c, lambda e: isinstance(e, ErrorEvent))[-1].code == "unknown_job"
            for jid in ids:  # the client's recovery: submit the same ids again
                c.submit(jid, [png_bytes()], scripted("slow", steps=3))
            ends = wait_all([c], set(ids), JOB_TIMEOUT_S)
            assert all(isinstance(e, ResultReady) for e in ends.values()), ends
    outcomes = sorted((r["job_id"], r["outcome"]) for r in records_of(scale, set(ids), 4))
    assert outcomes == sorted([(j, o) for j in ids for o in ("cancelled", "result")])


@pytest.mark.slow  # deploys a second application (the weight-free pipeline) and runs it under both engines
def test_weight_free_results_are_bit_identical_under_both_engines(scale: Scale, tmp_path: Path) -> None:
    from tests.server.harness import running_server

    image = (Path(__file__).resolve().parents[2] / "examples" / "apple.png").read_bytes()
    settings = JobSettings(seed=3, texture_size=512, max_faces=4000, lods=(1.0, 0.5))
    config = write_config(tmp_path / "inflate.yaml", "inflate", {"backend": "inflate"}, replicas=1)

    def run(server: ServerProcess) -> Result:
        with ServerConnection(server.address) as c:
            jid = new_id("w")
            c.submit(jid, [image], settings)
            assert isinstance(finish(c, jid)[-1], ResultReady)
            c.fetch(jid)
            return collect(c, lambda e: isinstance(e, Result) and e.job_id == jid)[-1]

    ray_result = next(run(s) for s in running_gateway(tmp_path / "ray", scale.address, config, backend="inflate"))
    local_result = next(run(s) for s in running_server(tmp_path / "local", backend="inflate"))
    assert ray_result.provenance["backend"] == local_result.provenance["backend"] == "inflate"
    for key in ("positions", "faces", "uvs", "normals"):
        np.testing.assert_array_equal(ray_result.mesh[key], local_result.mesh[key])
    assert len(ray_result.lods) == len(local_result.lods) == 1
    np.testing.assert_array_equal(ray_result.lods[0]["faces"], local_result.lods[0]["faces"])
    assert ray_result.textures.keys() == local_result.textures.keys() and ray_result.textures
    assert ray_result.textures == local_result.textures, "texture maps differ byte for byte"

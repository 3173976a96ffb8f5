"""A local two-node Ray cluster and Ray-engine gateways for the scale tests.

The cluster is real (``ray.cluster_utils.Cluster``: a head and a second node on this machine,
one CPU each, no dashboard); so are the gateways (``step1x3d serve --engine ray`` processes)
and the Serve replicas. Start one cluster per test module: it takes seconds on a small machine.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

from tests.server.harness import REPO, ServerProcess, wait_ready

SCRIPTED = "tests.server.pipelines:ScriptedPipeline"
GATEWAY_READY_S = 180.0  # deploying replicas on a loaded 2-core machine


def start_cluster(nodes: int = 2, gcs_port: int | None = None, attempts: int = 3) -> Any:
    """A head (+ ``nodes - 1`` more) with one CPU each on this machine; replicas import the tests
    package, so PYTHONPATH has the repo.

    Ray gives a node 30 s to register with its GCS; a machine loaded by other jobs can miss that,
    so a failed start is cleaned up and tried again.
    """
    from ray.cluster_utils import Cluster

    os.environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    head: dict[str, Any] = {"num_cpus": 1, "include_dashboard": False}
    if gcs_port is not None:
        head["gcs_server_port"] = gcs_port
    for attempt in range(attempts):
        cluster = Cluster()
        try:
            cluster.add_node(**head)
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=1)
            return cluster
        except Exception:
            cluster.shutdown()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def stop_cluster(cluster: Any) -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def write_config(path: Path, app: str, args: dict[str, Any], deployment: str = "WeightFree", replicas: int = 2,
                 cpus: float = 0.25) -> Path:
    """A Ray Serve config file in Serve's own format; one replica per node."""
    config = {
        "applications": [{
            "name": app,
            "import_path": "inference_server.scale.app:build_app",
            "args": args,
            "deployments": [{
                "name": deployment,
                "num_replicas": replicas,
                "max_ongoing_requests": 1,
                "max_replicas_per_node": 1,
                "ray_actor_options": {"num_cpus": cpus},
            }],
        }]
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def ray_gateway(results_dir: Path, address: str, config: Path, *extra: str, backend: str = SCRIPTED,
                port: int = 0) -> ServerProcess:
    return ServerProcess(results_dir, "--engine", "ray", "--ray-address", address, "--serve-config", str(config),
                         *extra, backend=backend, port=port)


def running_gateway(results_dir: Path, address: str, config: Path, *extra: str, **kwargs: Any) -> Iterator[ServerProcess]:
    server = ray_gateway(results_dir, address, config, *extra, **kwargs)
    try:
        wait_ready(server.address, timeout_s=GATEWAY_READY_S)
        yield server
    finally:
        server.stop()


def records(folder: Path) -> list[dict[str, Any]]:
    """Every replica's own job records (one JSON line per job attempt)."""
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_all(conns: list[Any], job_ids: set[str], timeout_s: float = 300.0) -> dict[str, Any]:
    """Every job's end (``ResultReady``, or the ``Rejected``/``ErrorEvent``/failed or cancelled state
    that ended it), reading every event of every poll of every connection: two jobs of one client
    can end in the same poll."""
    from blender_addon.client import ErrorEvent, Rejected, ResultReady, StateChanged

    ends: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    while len(ends) < len(job_ids) and time.monotonic() < deadline:
        for conn in conns:
            for event in conn.poll(10):
                job_id = getattr(event, "job_id", None)
                if job_id not in job_ids or job_id in ends:
                    continue
                ended = isinstance(event, StateChanged) and event.state in ("failed", "cancelled")
                if ended or isinstance(event, (ResultReady, Rejected, ErrorEvent)):
                    ends[job_id] = event
    missing = job_ids - set(ends)
    assert not missing, f"{len(missing)} jobs did not end within {timeout_s:.0f} s: {sorted(missing)}"
    return ends

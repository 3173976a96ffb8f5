"""Benchmark: the Ray engine behind the ZeroMQ gateway against the local engine.

    python benchmarks/scale.py              # 10-25 minutes on 2 shared cores
    python benchmarks/scale.py --quick      # fewer jobs, for a check that the script works

Starts a two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``, one CPU per node,
no dashboard) and real ``step1x3d serve`` gateways, and measures, from a client's side
(submit -> ``result_ready``):

* **added latency per job**: the same near-zero-work job (the scripted test pipeline's ``fast``
  behaviour: a cube with three 64x64 maps) run one after another on the local engine and on the
  Ray engine; the difference of the medians is what the gateway + bridge + Serve add per job.
  It is also put against one weight-free job (``inflate``, ``examples/apple.png`` at
  texture size 512) on the local engine;
* **jobs per minute with 1 and 2 replicas**: a batch submitted at once from 4 clients, for two
  kinds of job: ``sleep`` (the scripted pipeline's ``slow`` behaviour, 10 steps of 0.1 s
  sleeping: what scaling looks like when each replica has its own hardware) and ``weight-free``
  (real CPU work: on a 2-core machine two replicas share the same two cores).

Every job is checked to end ``result_ready``. Each configuration runs one warm-up job per
replica first (model load, kernel compilation) that is not timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from blender_addon.client import ErrorEvent, Rejected, ResultReady, ServerConnection  # noqa: E402
from blender_addon.protocol.settings import JobSettings  # noqa: E402
from tests.scale.harness import ray_gateway, start_cluster, stop_cluster, write_config  # noqa: E402
from tests.server.harness import ServerProcess, collect, png_bytes, wait_ready  # noqa: E402

SCRIPTED = "tests.server.pipelines:ScriptedPipeline"
APPLE = (REPO / "examples" / "apple.png").read_bytes()
JOB_TIMEOUT_S = 600.0
KINDS: dict[str, tuple[str, bytes, JobSettings]] = {
    "fast": (SCRIPTED, png_bytes(), JobSettings(lora="fast")),
    "sleep": (SCRIPTED, png_bytes(), JobSettings(lora="slow", steps=10)),
    "weight-free": ("inflate", APPLE, JobSettings(texture_size=512, max_faces=20_000)),
}


def run_one(conn: ServerConnection, image: bytes, settings: JobSettings) -> float:
    jid = f"b-{uuid.uuid4().hex[:12]}"
    start = time.perf_counter()
    conn.submit(jid, [image], settings)
    last = collect(conn, lambda e: isinstance(e, (ResultReady, Rejected, ErrorEvent)) and e.job_id == jid,
                   timeout_s=JOB_TIMEOUT_S)[-1]
    if not isinstance(last, ResultReady):
        raise RuntimeError(f"job {jid} did not finish: {last}")
    elapsed = time.perf_counter() - start
    conn.close_job(jid)
    return elapsed


def sequential(address: str, kind: str, n: int) -> list[float]:
    _, image, settings = KINDS[kind]
    with ServerConnection(address) as conn:
        return [run_one(conn, image, settings) for _ in range(n)]


def batch(address: str, kind: str, n: int, clients: int = 4) -> float:
    """Submit ``n`` jobs at once from ``clients`` connections; jobs per minute until the last is ready."""
    _, image, settings = KINDS[kind]
    conns = [ServerConnection(address) for _ in range(clients)]
    try:
        ids: dict[int, list[str]] = {i: [] for i in range(clients)}
        start = time.perf_counter()
        for k in range(n):
            jid = f"b-{uuid.uuid4().hex[:12]}"
            ids[k % clients].append(jid)
            conns[k % clients].submit(jid, [image], settings)
        for i, conn in enumerate(conns):
            pending = set(ids[i])
            while pending:
                event = collect(conn, lambda e: isinstance(e, (ResultReady, Rejected, ErrorEvent))
                                and e.job_id in pending, timeout_s=JOB_TIMEOUT_S)[-1]
                if not isinstance(event, ResultReady):
                    raise RuntimeError(f"job {event.job_id} did not finish: {event}")
                pending.discard(event.job_id)
        return n / ((time.perf_counter() - start) / 60.0)
    finally:
        for conn in conns:
            conn.close()


def local_gateway(root: Path, backend: str) -> ServerProcess:
    server = ServerProcess(root / f"local-{backend.split(':')[-1]}", backend=backend)
    wait_ready(server.address, timeout_s=120.0)
    return server


def ray_app(root: Path, address: str, app: str, backend: str, replicas: int) -> ServerProcess:
    config = write_config(root / f"{app}.yaml", app, {"backend": backend}, replicas=replicas, cpus=0.5)
    server = ray_gateway(root / f"ray-{app}", address, config, "--queue-size", "64", backend=backend)
    wait_ready(server.address, timeout_s=600.0)
    return server


def delete_app(address: str, app: str) -> None:
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    serve.delete(app)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs: checks the script, not the numbers")
    parser.add_argument("--weightfree-jobs", type=int, default=4, help="weight-free jobs per batch (default: 4)")
    args = parser.parse_args()
    n_latency = 5 if args.quick else 30
    n_sleep = 4 if args.quick else 16
    n_weightfree = 2 if args.quick else args.weightfree_jobs

    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        local = local_gateway(root, SCRIPTED)
        try:
            sequential(local.address, "fast", 2)  # warm-up
            local_fast = statistics.median(sequential(local.address, "fast", n_latency))
        finally:
            local.stop()
        local_inflate_server = local_gateway(root, "inflate")
        try:
            sequential(local_inflate_server.address, "weight-free", 1)  # warm-up (kernels load)
            local_inflate = statistics.median(sequential(local_inflate_server.address, "weight-free", 2))
            local_wf_rate = batch(local_inflate_server.address, "weight-free", n_weightfree)
        finally:
            local_inflate_server.stop()
        local_sleep_server = local_gateway(root, SCRIPTED)
        try:
            local_sleep_rate = batch(local_sleep_server.address, "sleep", n_sleep)
        finally:
            local_sleep_server.stop()

        cluster = start_cluster()
        results: dict[tuple[str, int], float] = {}
        ray_fast = 0.0
        try:
            for replicas in (1, 2):
                for kind, backend in (("sleep", SCRIPTED), ("weight-free", "inflate")):
                    app = f"bench-{kind}-{replicas}"
                    server = ray_app(root, cluster.address, app, backend, replicas)
                    try:
                        batch(server.address, kind, replicas)  # warm-up: one job per replica
                        if kind == "sleep" and replicas == 1:
                            sequential(server.address, "fast", 2)
                            ray_fast = statistics.median(sequential(server.address, "fast", n_latency))
                        n = n_sleep if kind == "sleep" else n_weightfree
                        results[(kind, replicas)] = batch(server.address, kind, n)
                    finally:
                        server.stop()
                        delete_app(cluster.address, app)
        finally:
            stop_cluster(cluster)

    added = ray_fast - local_fast
    rows.append(("near-zero job, submit -> result_ready, local engine (median)", f"{local_fast * 1000:.1f} ms"))
    rows.append(("near-zero job, submit -> result_ready, Ray engine (median)", f"{ray_fast * 1000:.1f} ms"))
    rows.append(("added latency per job (Ray - local)", f"{added * 1000:.1f} ms"))
    rows.append(("weight-free job, local engine (median)", f"{local_inflate:.2f} s"))
    rows.append(("added latency / weight-free job", f"{100 * added / local_inflate:.1f} %"))
    rows.append(("sleep jobs/min: local engine", f"{local_sleep_rate:.1f}"))
    rows.append(("sleep jobs/min: Ray, 1 replica", f"{results[('sleep', 1)]:.1f}"))
    rows.append(("sleep jobs/min: Ray, 2 replicas", f"{results[('sleep', 2)]:.1f}"))
    rows.append(("weight-free jobs/min: local engine", f"{local_wf_rate:.2f}"))
    rows.append(("weight-free jobs/min: Ray, 1 replica", f"{results[('weight-free', 1)]:.2f}"))
    rows.append(("weight-free jobs/min: Ray, 2 replicas (same 2 cores)", f"{results[('weight-free', 2)]:.2f}"))
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}} | value")
    print(f"{'-' * width}-|------")
    for key, value in rows:
        print(f"{key:<{width}} | {value}")
    print(f"\n{os.cpu_count()} CPUs; jobs: latency {n_latency} sequential, sleep batch {n_sleep}, "
          f"weight-free batch {n_weightfree}, from 4 clients")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

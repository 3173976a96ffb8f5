"""Benchmark: the Ray engine behind the ZeroMQ gateway against the local engine.

    python benchmarks/scale.py              # 10-20 minutes on 2 shared cores
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

All gateways (local and Ray, 1 and 2 replicas) are up at once and the measurements alternate
between them (latency job by job, batches engine by engine within a round), so the load other
people put on a shared machine hits every configuration alike. Every job is checked to end
``result_ready``. Each configuration first runs one warm-up job per replica (model load, kernel
compilation) that is not timed. Replicas take a quarter CPU each, so Ray runs them with one math
thread (OMP_NUM_THREADS=1); the local worker uses the machine's threads.
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
from tests.server.pipelines import scripted  # noqa: E402

SCRIPTED = "tests.server.pipelines:ScriptedPipeline"
APPLE = (REPO / "examples" / "apple.png").read_bytes()
JOB_TIMEOUT_S = 600.0
KINDS: dict[str, tuple[str, bytes, JobSettings]] = {
    "fast": (SCRIPTED, png_bytes(), scripted("fast")),
    "sleep": (SCRIPTED, png_bytes(), scripted("slow", steps=10)),
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
        pending = {jid for jids in ids.values() for jid in jids}
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while pending and time.monotonic() < deadline:
            for conn in conns:  # every event of every poll: two results may arrive in one
                for event in conn.poll(10):
                    if isinstance(event, (Rejected, ErrorEvent)) and event.job_id in pending:
                        raise RuntimeError(f"job {event.job_id} did not finish: {event}")
                    if isinstance(event, ResultReady):
                        pending.discard(event.job_id)
        if pending:
            raise RuntimeError(f"{len(pending)} jobs did not finish in {JOB_TIMEOUT_S:.0f} s")
        return n / ((time.perf_counter() - start) / 60.0)
    finally:
        for conn in conns:
            conn.close()


def local_gateway(root: Path, backend: str) -> ServerProcess:
    server = ServerProcess(root / f"local-{backend.split(':')[-1]}", "--queue-size", "64", backend=backend)
    wait_ready(server.address, timeout_s=120.0)
    return server


def ray_app(root: Path, address: str, app: str, backend: str, replicas: int) -> ServerProcess:
    config = write_config(root / f"{app}.yaml", app, {"backend": backend}, replicas=replicas, cpus=0.25)
    server = ray_gateway(root / f"ray-{app}", address, config, "--queue-size", "64", backend=backend)
    wait_ready(server.address, timeout_s=600.0)
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs: checks the script, not the numbers")
    parser.add_argument("--weightfree-jobs", type=int, default=4, help="weight-free jobs per batch (default: 4)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the throughput batches (default: 2)")
    args = parser.parse_args()
    n_latency = 5 if args.quick else 30
    n_sleep = 4 if args.quick else 16
    n_weightfree = 2 if args.quick else args.weightfree_jobs
    rounds = 1 if args.quick else args.rounds

    servers: dict[str, ServerProcess] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cluster = start_cluster()
        try:
            # Everything up at once, so each measurement alternates between the engines in the same
            # minutes: the machine's load (other people's jobs) then hits both alike.
            servers["local sleep"] = local_gateway(root, SCRIPTED)
            servers["local weight-free"] = local_gateway(root, "inflate")
            for replicas in (1, 2):
                servers[f"ray{replicas} sleep"] = ray_app(root, cluster.address, f"bench-sleep-{replicas}", SCRIPTED, replicas)
                servers[f"ray{replicas} weight-free"] = ray_app(root, cluster.address, f"bench-wf-{replicas}", "inflate", replicas)
            for name, server in servers.items():  # warm-up: one job per replica (models, kernels)
                batch(server.address, name.split(" ", 1)[1], 2 if name.startswith("ray2") else 1)

            fast: dict[str, list[float]] = {"local": [], "ray": []}
            for _ in range(n_latency):
                fast["local"] += sequential(servers["local sleep"].address, "fast", 1)
                fast["ray"] += sequential(servers["ray1 sleep"].address, "fast", 1)
            single: dict[str, list[float]] = {"local": [], "ray": []}
            for _ in range(2):
                single["local"] += sequential(servers["local weight-free"].address, "weight-free", 1)
                single["ray"] += sequential(servers["ray1 weight-free"].address, "weight-free", 1)
            rates: dict[str, list[float]] = {}
            for _ in range(rounds):
                for kind, n in (("sleep", n_sleep), ("weight-free", n_weightfree)):
                    for engine in ("local", "ray1", "ray2"):
                        name = f"{engine} {kind}"
                        rates.setdefault(name, []).append(batch(servers[name].address, kind, n))
        finally:
            for server in servers.values():
                server.stop()
            stop_cluster(cluster)

    local_fast, ray_fast = statistics.median(fast["local"]), statistics.median(fast["ray"])
    local_single, ray_single = statistics.median(single["local"]), statistics.median(single["ray"])
    added = ray_fast - local_fast

    def rate(name: str) -> str:
        return " / ".join(f"{r:.1f}" for r in rates[name])

    rows = [
        ("near-zero job, submit -> result_ready, local engine (median)", f"{local_fast * 1000:.1f} ms"),
        ("near-zero job, submit -> result_ready, Ray engine, 1 replica (median)", f"{ray_fast * 1000:.1f} ms"),
        ("added latency per job (Ray - local)", f"{added * 1000:.1f} ms"),
        ("one weight-free job, local engine (median of 2)", f"{local_single:.2f} s"),
        ("one weight-free job, Ray engine, 1 replica (median of 2)", f"{ray_single:.2f} s"),
        ("added latency / weight-free job", f"{100 * added / local_single:.2f} %"),
        ("sleep jobs/min, local engine (per round)", rate("local sleep")),
        ("sleep jobs/min, Ray 1 replica (per round)", rate("ray1 sleep")),
        ("sleep jobs/min, Ray 2 replicas (per round)", rate("ray2 sleep")),
        ("weight-free jobs/min, local engine (per round)", rate("local weight-free")),
        ("weight-free jobs/min, Ray 1 replica (per round)", rate("ray1 weight-free")),
        ("weight-free jobs/min, Ray 2 replicas, same 2 cores (per round)", rate("ray2 weight-free")),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}} | value")
    print(f"{'-' * width}-|------")
    for key, value in rows:
        print(f"{key:<{width}} | {value}")
    print(f"\n{os.cpu_count()} CPUs; latency: {n_latency} jobs per engine, alternating; batches: sleep {n_sleep}, "
          f"weight-free {n_weightfree} jobs from 4 clients, {rounds} round(s), engines alternating within a round")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

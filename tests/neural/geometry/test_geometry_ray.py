"""The tiny neural backend as Ray Serve deployments: the local engine's mesh within float tolerance; a full job split.

A one-node Ray cluster on this machine (the two-node tests live in tests/scale); the application
is the step1x3d backend's Geometry deployment (one replica, loading the tiny official-layout
weights once) and its Texture deployment (autoscaled from zero: a geometry job never wakes it).
The local engine's side is the code its worker runs (``produce_result`` over the backend), here
in the test process. Ray runs a replica with one math thread (OMP_NUM_THREADS=1 for a fractional
CPU), the local side with the machine's threads, so float sums differ in the last bits and the
decimation may pick a few different edges: the meshes are compared as surfaces (counts, bounds,
nearest-vertex distances), not index by index. A full job then runs geometry on the Geometry
replica and hands its mesh (through the object store) to a Texture replica woken from zero.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray.serve")

from blender_addon.client import ErrorEvent, Rejected, Result, ResultReady, ServerConnection, Welcome  # noqa: E402
from blender_addon.protocol.settings import JobSettings  # noqa: E402
from tests.server.harness import ServerProcess, collect  # noqa: E402

JOB_TIMEOUT_S = 300.0


def geometry_result(server: ServerProcess, image: bytes, settings: JobSettings) -> tuple[Welcome, Result]:
    with ServerConnection(server.address) as conn:
        conn.hello()
        welcome = collect(conn, lambda e: isinstance(e, Welcome))[-1]
        jid = f"n-{uuid.uuid4().hex[:10]}"
        conn.submit(jid, [image], settings)
        last = collect(conn, lambda e: isinstance(e, (ResultReady, ErrorEvent, Rejected)) and e.job_id == jid,
                       timeout_s=JOB_TIMEOUT_S)[-1]
        assert isinstance(last, ResultReady), last
        conn.fetch(jid)
        return welcome, collect(conn, lambda e: isinstance(e, Result) and e.job_id == jid, timeout_s=60.0)[-1]


def nearest_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each point of ``a``, the distance to the nearest point of ``b`` (chunked brute force)."""
    out = np.empty(len(a))
    for i in range(0, len(a), 512):
        d = np.linalg.norm(a[i:i + 512, None, :].astype(np.float64) - b[None, :, :].astype(np.float64), axis=2)
        out[i:i + 512] = d.min(axis=1)
    return out


@pytest.mark.slow  # a Ray cluster and a replica that imports torch and loads the tiny models (about a minute)
def test_tiny_geometry_job_matches_between_engines(tiny_repo: Path, reference_rgba: np.ndarray, tmp_path: Path) -> None:
    import yaml

    from inference_server.pipeline.base import JobContext
    from inference_server.pipeline.registry import create_pipeline
    from inference_server.server.intake import QueuedRequest
    from inference_server.server.job_runner import produce_result
    from tests.scale.harness import running_gateway, start_cluster, stop_cluster

    buf = io.BytesIO()
    Image.fromarray(reference_rgba, "RGBA").save(buf, format="PNG")
    image = buf.getvalue()
    settings = JobSettings(mode="geometry", steps=3, options={"octree_resolution": 64}, max_faces=5_000, seed=11)
    deployment = {"max_ongoing_requests": 1, "ray_actor_options": {"num_cpus": 0.25}}
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"applications": [{
        "name": "tiny-neural",
        "import_path": "inference_server.scale.app:build_app",
        "args": {"backend": "step1x3d", "weights": str(tiny_repo), "records_dir": str(tmp_path / "records")},
        "deployments": [
            {"name": "Geometry", "num_replicas": 1, **deployment},
            {"name": "Texture", "autoscaling_config": {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1},
             **deployment},
        ],
    }]}), encoding="utf-8")

    full = JobSettings(mode="full", steps=3, options={"octree_resolution": 64}, max_faces=5_000, seed=11, texture_size=512)
    cluster = start_cluster(nodes=1)
    try:
        for gateway in running_gateway(tmp_path / "ray", cluster.address, config, "--weights", str(tiny_repo),
                                       backend="step1x3d"):
            ray_welcome, ray_result = geometry_result(gateway, image, settings)
            _, ray_full = geometry_result(gateway, image, full)
    finally:
        stop_cluster(cluster)
    pipeline = create_pipeline("step1x3d", tiny_repo)
    local_result = produce_result(pipeline.run, pipeline.name, QueuedRequest(images=[image], settings=settings),
                                  "local", False, JobContext())
    local = dict(local_result.wire_parts())

    assert ray_welcome.active_backend == "step1x3d"
    assert ray_welcome.backends["step1x3d"]["engine"]["deployments"] == ["Geometry", "Texture"]
    assert ray_result.provenance["geometry_model"] == local_result.provenance["geometry_model"]
    ray_pos, local_pos = ray_result.mesh["positions"], local["mesh.positions"]
    assert ray_result.mesh["faces"].shape == local["mesh.faces"].shape and len(local_pos) > 0
    assert abs(len(ray_pos) - len(local_pos)) <= 0.02 * len(local_pos)
    np.testing.assert_allclose(ray_pos.min(axis=0), local_pos.min(axis=0), atol=1e-3)
    np.testing.assert_allclose(ray_pos.max(axis=0), local_pos.max(axis=0), atol=1e-3)
    diagonal = float(np.linalg.norm(local_pos.max(axis=0) - local_pos.min(axis=0)))
    both_ways = np.concatenate([nearest_distances(ray_pos, local_pos), nearest_distances(local_pos, ray_pos)])
    assert float(np.median(both_ways)) < 1e-5 * diagonal, "most vertices are the same to float precision"
    assert float(both_ways.max()) < 0.02 * diagonal, "where decimation differed, the surfaces still coincide"

    # A full job is split: geometry on the Geometry replica, the rest on a Texture replica (woken from zero).
    from tests.scale.harness import records

    steps = sorted((r["stage"], r["step"], r["outcome"]) for r in records(tmp_path / "records"))
    assert steps == [("Geometry", "all", "result"), ("Geometry", "geometry", "part"), ("Texture", "finish", "result")]
    assert {"base_color", "orm"} <= set(ray_full.textures)  # a normal map only when decimation lost shape
    assert ray_full.provenance["geometry_model"] == "Step1X-3D-Geometry-1300m"
    assert any(k.startswith("geometry_") for k in ray_full.timings), "the geometry stage's timings travelled with it"
    assert 0 < len(ray_full.mesh["faces"]) <= 5_000 and ray_full.mesh["uvs"].shape == (len(ray_full.mesh["positions"]), 2)

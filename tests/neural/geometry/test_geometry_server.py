"""A tiny-model job through a real ``step1x3d serve --backend step1x3d --weights DIR`` process."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from blender_addon.client import ErrorEvent, Progress, Result, ResultReady, ServerConnection, Welcome
from blender_addon.protocol.settings import JobSettings
from tests.server.harness import ServerProcess, collect, events_of, running_server

pytest.importorskip("zmq")


@pytest.fixture(scope="module")
def neural_server(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("neural-results"), "--weights", str(tiny_repo),
                              backend="step1x3d")


def test_geometry_job_through_the_server_gives_a_valid_glb(neural_server: ServerProcess,
                                                           reference_rgba: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(reference_rgba, "RGBA").save(buf, format="PNG")
    jid = f"g-{uuid.uuid4().hex[:12]}"
    settings = JobSettings(mode="geometry", steps=3, options={"octree_resolution": 64}, max_faces=5_000, seed=11)
    with ServerConnection(neural_server.address) as conn:
        conn.hello()
        welcome = collect(conn, lambda e: isinstance(e, Welcome))[-1]
        assert welcome.active_backend == "step1x3d"
        conn.submit(jid, [buf.getvalue()], settings, want_glb=True)
        events = collect(conn, lambda e: isinstance(e, (ResultReady, ErrorEvent)), timeout_s=240.0)
        assert not events_of(events, ErrorEvent), events_of(events, ErrorEvent)
        assert {"sampling", "extract"} <= {p.stage for p in events_of(events, Progress)}
        conn.fetch(jid)
        result = collect(conn, lambda e: isinstance(e, Result) and e.job_id == jid, timeout_s=60.0)[-1]
    faces = result.mesh["faces"]
    assert 0 < len(faces) <= 5_000 and int(faces.max()) < len(result.mesh["positions"])
    assert result.provenance["geometry_model"] == "Step1X-3D-Geometry-1300m"
    assert result.glb is not None and result.glb[:4] == b"glTF"
    import trimesh

    scene = trimesh.load(io.BytesIO(result.glb), file_type="glb")
    mesh = next(iter(scene.geometry.values())) if isinstance(scene, trimesh.Scene) else scene
    assert len(mesh.faces) == len(faces)

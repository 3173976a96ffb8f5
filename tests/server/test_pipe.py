"""The server <-> worker pipe carries typed messages through the wire codec; nothing on it is ever unpickled."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pytest

from blender_addon.protocol.schema import ProtocolError
from inference_server.assets import MeshData
from inference_server.server import pipe
from inference_server.server.intake import QueuedRequest
from inference_server.server.worker import WorkerHandle

from .harness import png_bytes
from .pipelines import scripted

SCRIPTED = "tests.server.pipelines:ScriptedPipeline"


class Touch:
    """A pickle that, when loaded, creates ``path``: what a pipe that unpickles would execute."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.path,)


def test_a_job_request_crosses_the_pipe_as_frames_and_comes_back_equal() -> None:
    a, b = mp.Pipe(duplex=True)
    mesh = MeshData(positions=np.random.default_rng(1).random((4, 3), dtype=np.float32),
                    faces=np.array([[0, 1, 2], [0, 2, 3]], np.uint32), uvs=np.zeros((4, 2), np.float32))
    request = QueuedRequest(images=[png_bytes(), b"\x89PNG second"], settings=scripted("fast", seed=7, mode="texture"),
                            mesh=mesh, image_names=["front.png", "back.png"], max_pixels=1234)
    pipe.PipeEnd(a).send(pipe.RunJob.of("job-1", request, True))
    msg = pipe.PipeEnd(b).recv()
    assert isinstance(msg, pipe.RunJob) and (msg.job_id, msg.want_glb) == ("job-1", True)
    back = msg.request()
    assert [bytes(i) for i in back.images] == [bytes(i) for i in request.images]
    assert back.settings == request.settings and back.image_names == request.image_names and back.max_pixels == 1234
    assert back.mesh is not None and back.mesh.normals is None
    np.testing.assert_array_equal(back.mesh.positions, mesh.positions)
    np.testing.assert_array_equal(back.mesh.faces, mesh.faces)
    back.mesh.positions[0, 0] = 5.0  # the worker owns (and may change) its copy


def test_a_pickle_on_the_pipe_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    assert pickle.loads(pickle.dumps(Touch(marker))) is None and marker.exists()  # the bomb works when unpickled
    marker.unlink()
    for payload in (pickle.dumps(Touch(marker)), pickle.dumps(("ready", Touch(marker)))):
        a, b = mp.Pipe(duplex=True)
        Connection.send_bytes(a, payload)  # exactly what conn.send() would put on the pipe
        with pytest.raises((ProtocolError, OSError)):
            pipe.PipeEnd(b).recv()
        assert not marker.exists()
    # A frame count followed by frames that are not our header (a pickle in a frame) is refused as well.
    a, b = mp.Pipe(duplex=True)
    a.send_bytes((1).to_bytes(4, "little"))
    a.send_bytes(pickle.dumps(Touch(marker)))
    with pytest.raises(ProtocolError):
        pipe.PipeEnd(b).recv()
    assert not marker.exists()


def test_a_worker_runs_a_job_without_the_supervisor_ever_unpickling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("Connection.recv() unpickles: the supervisor must never call it")

    monkeypatch.setattr(Connection, "recv", refuse)
    handle = WorkerHandle(SCRIPTED, None, tmp_path, {})
    try:
        seen: list[object] = []
        deadline = time.monotonic() + 60
        while not any(isinstance(m, pipe.Ready) for m in seen) and time.monotonic() < deadline:
            handle.pipe.poll(0.2)
            seen += handle.receive()[0]
        request = QueuedRequest(images=[png_bytes()], settings=scripted("fast"), image_names=["front.png"])
        assert handle.run("pipe-job", request, False)
        while not any(isinstance(m, (pipe.JobDone, pipe.JobFailure)) for m in seen) and time.monotonic() < deadline:
            handle.pipe.poll(0.2)
            seen += handle.receive()[0]
        assert any(isinstance(m, pipe.JobProgress) and m.job_id == "pipe-job" for m in seen)
        assert isinstance(seen[-1], pipe.JobDone) and seen[-1].job_id == "pipe-job", seen[-3:]
        assert (tmp_path / ".staged-pipe-job").exists()  # staged for the supervisor to commit
    finally:
        handle.kill()

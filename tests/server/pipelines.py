"""Test-only backends, loaded by the server as ``tests.server.pipelines:Name``.

``ScriptedPipeline`` picks its behaviour from its own declared option, ``behaviour``
(``scripted("slow", steps=10)`` builds such settings), so one server process can
exercise every path (fast, slow, crash, OOM, failure) without a restart per test;
the named subclasses fix one behaviour each.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np

from blender_addon.protocol.errors import Step1X3DError
from blender_addon.protocol.settings import JobSettings
from inference_server.assets import Asset, MeshData, PBRMaterial
from inference_server.pipeline.base import JobContext, JobRequest, PipelineError
from inference_server.pipeline.options import OptionSpec, option_value, specs_to_wire

STEP_SLEEP_S = 0.1
BEHAVIOURS = ("fast", "slow", "crash", "oom", "fail", "export-failed", "die-after-write", "hang", "crash-once")
# The test backend's own option (per-backend options are exactly for this): which path a job takes.
BEHAVIOUR = OptionSpec("behaviour", "choice", "fast", "What the scripted test job does", choices=BEHAVIOURS)


EXPORT_FAILED_SENTENCE = "the test exporter could not write the asset as .xyz"


def scripted(behaviour: str, **settings: Any) -> JobSettings:
    """Settings for one scripted job: ``behaviour`` (one of BEHAVIOURS) plus common settings."""
    return JobSettings(**settings, options={BEHAVIOUR.name: behaviour})


# Face normal -> (u, v) with u x v = normal, so corners in (u, v) order are counter-clockwise outside.
CUBE_FACES = {
    (1, 0, 0): ((0, 0, -1), (0, 1, 0)),
    (-1, 0, 0): ((0, 0, 1), (0, 1, 0)),
    (0, 1, 0): ((1, 0, 0), (0, 0, -1)),
    (0, -1, 0): ((1, 0, 0), (0, 0, 1)),
    (0, 0, 1): ((1, 0, 0), (0, 1, 0)),
    (0, 0, -1): ((-1, 0, 0), (0, 1, 0)),
}


def cube_mesh() -> MeshData:
    """A unit cube with per-face vertices (24), UVs and normals: small but real."""
    positions, normals, uvs, faces = [], [], [], []
    for n_t, (u_t, v_t) in CUBE_FACES.items():
        n, u, v = (np.array(t, dtype=np.float32) for t in (n_t, u_t, v_t))
        base = len(positions)
        for cu, cv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            positions.append(n * 0.5 + u * 0.5 * cu + v * 0.5 * cv)
            normals.append(n)
            uvs.append(((cu + 1) / 2, (1 - cv) / 2))
        faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return MeshData(
        positions=np.array(positions, dtype=np.float32),
        faces=np.array(faces, dtype=np.uint32),
        uvs=np.array(uvs, dtype=np.float32),
        normals=np.array(normals, dtype=np.float32),
    )


def checker(size: int = 64, cells: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    on = ((yy // (size // cells)) + (xx // (size // cells))) % 2 == 0
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[on] = (230, 60, 40)
    img[~on] = (30, 30, 200)
    return img


def cube_asset(request: JobRequest, name: str) -> Asset:
    size = 64
    orm = np.zeros((size, size, 3), dtype=np.uint8)
    orm[..., 0], orm[..., 1], orm[..., 2] = 255, 128, 0
    normal = np.zeros((size, size, 3), dtype=np.uint8)
    normal[..., 0], normal[..., 1], normal[..., 2] = 128, 128, 255
    geometry_only = request.settings.mode == "geometry"
    material = None if geometry_only else PBRMaterial(base_color=checker(size), orm=orm, normal=normal, roughness_factor=0.8)
    mesh = cube_mesh() if request.mesh is None else request.mesh
    lods = [cube_mesh() for _ in request.settings.lods[1:]]
    return Asset(
        mesh=mesh,
        material=material,
        lods=lods,
        provenance={"backend": name, "seed": request.settings.seed, "image_shape": list(request.images[0].shape)},
        timings={"geometry": 0.01},
        notes=["test cube"],
    )


def die_after_next_rename() -> None:
    """SIGKILL this (worker) process right after its next ``os.replace``: the moment its result file is written.

    Models a worker killed (OOM killer, a crash in a native extension) after writing the job's
    result but before telling the server the job is done.
    """
    original = os.replace

    def replace_then_die(src: Any, dst: Any, **kwargs: Any) -> None:
        original(src, dst, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace_then_die  # type: ignore[assignment]


class ScriptedPipeline:
    name = "test-scripted"

    behaviour: str | None = None  # fixed by subclasses; else the job's "behaviour" option decides

    def __init__(self, **_options: Any) -> None:
        self.released = 0

    def capabilities(self) -> dict[str, Any]:
        return {
            "modes": ["full", "geometry", "texture"],
            "pbr": True,
            "device": "cpu",
            "stages": {"geometry": 3, "texture": 1},
            "options": specs_to_wire([BEHAVIOUR]),
        }

    def run(self, request: JobRequest, ctx: JobContext) -> Asset:
        behaviour = self.behaviour or option_value(request.settings, BEHAVIOUR)
        if behaviour == "fast":
            for step in range(1, 4):
                ctx.progress("geometry", step, 3, "shaping")
            ctx.progress("texture", 1, 1, "painting")
        elif behaviour == "slow":
            steps = request.settings.steps
            for step in range(1, steps + 1):
                time.sleep(STEP_SLEEP_S)
                ctx.progress("geometry", step, steps, "")
        elif behaviour == "crash":
            ctx.progress("geometry", 1, 3, "")
            time.sleep(0.2)
            os._exit(17)
        elif behaviour == "oom":
            ctx.progress("geometry", 1, 3, "")
            raise MemoryError("test allocation failed")
        elif behaviour == "fail":
            raise PipelineError("the test pipeline failed on purpose", code="bad_mesh")
        elif behaviour == "export-failed":  # the one error type itself, not a PipelineError
            raise Step1X3DError(EXPORT_FAILED_SENTENCE, "export_failed")
        elif behaviour == "die-after-write":
            die_after_next_rename()
        elif behaviour == "hang":
            ctx.progress("geometry", 1, 2, "")
            time.sleep(60)  # no progress calls: only a kill ends this
        else:
            raise PipelineError(f"unknown test behaviour {behaviour!r}", code="bad_settings")
        return cube_asset(request, self.name)

    def release_memory(self) -> None:
        self.released += 1


class FastPipeline(ScriptedPipeline):
    name = "test-fast"
    behaviour = "fast"


class SlowPipeline(ScriptedPipeline):
    name = "test-slow"
    behaviour = "slow"


class CrashPipeline(ScriptedPipeline):
    name = "test-crash"
    behaviour = "crash"


class OomPipeline(ScriptedPipeline):
    name = "test-oom"
    behaviour = "oom"


class FailingPipeline(ScriptedPipeline):
    name = "test-failing"
    behaviour = "fail"


class BrokenLoadPipeline(ScriptedPipeline):
    """Fails while loading, like a backend whose weights are missing."""

    name = "test-broken"

    def __init__(self, **_options: Any) -> None:
        raise PipelineError("the test backend has no weights", code="weights_missing")

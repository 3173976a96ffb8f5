"""Per-stage seconds in a GLB's provenance (``extras.stage_seconds``), read back from the file.

Structure and consistency only (keys, non-negative numbers, nesting), never durations: a test
must not depend on how loaded the machine is.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from export_helpers import PROVENANCE
from gltf_validator import validate_glb
from blender_addon.protocol.settings import JobSettings
from inference_server.assets import Asset
from inference_server.export import asset_to_glb, save_asset
from blender_addon.protocol.provenance import STAGE_SECONDS as STAGE_SECONDS_KEY
from inference_server.pipeline.base import JobContext, JobRequest
from inference_server.pipeline.inflate import InflatePipeline


def _extras(data: bytes) -> list[dict[str, Any]]:
    (length,) = struct.unpack_from("<I", data, 12)
    gltf = json.loads(data[20 : 20 + length])
    return [gltf["asset"]["extras"], gltf["nodes"][0]["extras"]]


def test_timings_go_into_both_extras_rounded_to_milliseconds(textured_asset: Asset) -> None:
    timed = Asset(mesh=textured_asset.mesh, material=textured_asset.material, provenance=dict(PROVENANCE),
                  timings={"prepare": 0.12345, "geometry": 2.0, "geometry.extract": np.float64(0.5)})
    data = asset_to_glb(timed)
    report = validate_glb(data)
    assert report["errors"] == 0, report["messages"]
    for extras in _extras(data):
        assert extras[STAGE_SECONDS_KEY] == {"prepare": 0.123, "geometry": 2.0, "geometry.extract": 0.5}
        assert extras["backend"] == "inflate" and extras["ai_generated"] is True
    assert timed.provenance == PROVENANCE  # the asset's own provenance is not changed


def test_no_timings_no_key(textured_asset: Asset) -> None:
    for extras in _extras(asset_to_glb(textured_asset)):
        assert STAGE_SECONDS_KEY not in extras


SMALL = JobSettings(max_faces=3_000, texture_size=512)  # the smallest size the settings allow


def disk() -> np.ndarray:
    yy, xx = np.mgrid[0:256, 0:256]
    image = np.zeros((256, 256, 4), np.uint8)
    image[(xx - 128) ** 2 + (yy - 128) ** 2 < 90**2] = (200, 60, 40, 255)
    return image


def test_a_pipeline_result_records_every_stage_it_ran(tmp_path: Path) -> None:
    request = JobRequest([disk()], SMALL, image_names=["disk.png"])
    asset = InflatePipeline().run(request, JobContext())
    (path,) = save_asset(asset, tmp_path / "disk.glb")
    asset_extras, node_extras = _extras(path.read_bytes())
    stages = asset_extras[STAGE_SECONDS_KEY]
    assert node_extras[STAGE_SECONDS_KEY] == stages
    assert set(stages) == set(asset.timings)
    assert {"prepare", "geometry", "uv_atlas", "texture", "pbr"} <= set(stages)
    assert all(isinstance(v, float) and v >= 0.0 for v in stages.values())
    # The geometry stage encloses its sub-stages (geometry.silhouette, .extract, ...): nesting, not speed.
    subs = [v for k, v in stages.items() if k.startswith("geometry.")]
    assert subs and sum(subs) <= stages["geometry"] + 0.001 * len(subs)


def test_a_server_written_glb_also_records_decode_and_total() -> None:
    """The GLB a server job writes (``want_glb``) carries the pipeline's stages plus the worker's own."""
    from inference_server.export.glb import png_bytes
    from inference_server.server.intake import QueuedRequest
    from inference_server.server.job_runner import produce_result

    pipeline = InflatePipeline()
    queued = QueuedRequest(images=[png_bytes(disk())], settings=SMALL, image_names=["disk.png"])
    result = produce_result(pipeline.run, pipeline.name, queued, "job-1", True, JobContext())
    assert result.glb is not None
    glb = result.glb
    stages = _extras(glb)[0][STAGE_SECONDS_KEY]
    assert {"decode_images", "total", "prepare", "geometry", "uv_atlas", "texture", "pbr"} <= set(stages)
    assert all(isinstance(v, float) and v >= 0.0 for v in stages.values())
    # "total" spans the decode and every top-level stage (nesting, not speed); 1 ms rounding per term.
    top = [v for k, v in stages.items() if "." not in k and k != "total"]
    assert sum(top) <= stages["total"] + 0.001 * (len(top) + 1)

"""One provenance: the same job run in-process by ``step1x3d generate`` and through a real server.

Both paths go through ``finalize_asset`` (server/job_runner.py), so their GLB ``extras`` are
equal apart from the per-run keys (``PER_RUN_KEYS``: the job id and the seconds each stage took).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from blender_addon.protocol import provenance as prov
from tests.server.harness import ServerProcess, png_bytes, running_server

FAST = "tests.server.pipelines:FastPipeline"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("provenance-results"), backend=FAST)


def _extras(path: Path) -> dict[str, Any]:
    from inference_server.export.glb_read import glb_to_asset

    return glb_to_asset(path.read_bytes()).provenance


def _generate(*args: str) -> None:
    from inference_server.cli import main

    assert main(["generate", *args]) == 0


def test_local_and_remote_jobs_record_the_same_provenance(server: ServerProcess, tmp_path: Path) -> None:
    front = tmp_path / "front.png"
    front.write_bytes(png_bytes(48))
    common = ["--seed", "11", "--texture-size", "512", "--max-faces", "2000"]
    _generate(str(front), "-o", str(tmp_path / "local.glb"), "--backend", FAST, *common)
    _generate(str(front), "-o", str(tmp_path / "remote.glb"), "--server", server.address, *common)
    local, remote = _extras(tmp_path / "local.glb"), _extras(tmp_path / "remote.glb")

    # The common keys, spelt once, on both paths.
    for extras in (local, remote):
        assert extras[prov.AI_GENERATED] is True
        assert extras[prov.SOURCE_IMAGES] == ["front.png"]
        assert extras[prov.SEED] == 11 and extras[prov.SETTINGS]["seed"] == 11
        assert extras[prov.GENERATOR].startswith("Step1X-3D for Blender ")
        assert {"decode_images", "total"} <= set(extras[prov.STAGE_SECONDS])
    assert "AI-generated" not in local and "images" not in local  # the old second spellings are gone

    # Equal except the documented per-run keys; those differ as they should.
    def stable(extras: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in extras.items() if k not in prov.PER_RUN_KEYS}

    assert json.dumps(stable(local), sort_keys=True) == json.dumps(stable(remote), sort_keys=True)
    assert set(local) == set(remote)
    assert local[prov.JOB_ID] != remote[prov.JOB_ID] and len(local[prov.JOB_ID]) == 32
    assert set(local[prov.STAGE_SECONDS]) == set(remote[prov.STAGE_SECONDS])

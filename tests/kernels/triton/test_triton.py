"""Triton kernels vs the numpy reference.

Without a GPU they run under Triton's interpreter (``TRITON_INTERPRET=1``) in a subprocess,
so the variable is set before triton is imported and does not leak into other tests. With a
CUDA device the same checks also run natively (marked ``gpu``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("triton")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def _run_interpreted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("triton") / "results.json"
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    proc = subprocess.run([sys.executable, str(HERE / "_checks.py"), str(out)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run_interpreted(tmp_path_factory)


@pytest.fixture(scope="module")
def native() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    sys.path.insert(0, str(HERE))
    import _checks

    _checks.DEVICE = "cuda"
    return _checks.run_all()


@pytest.fixture(params=["interpreted", pytest.param("native", marks=pytest.mark.gpu)])
def results(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.getfixturevalue(request.param)


def _get(results: dict[str, Any], name: str) -> dict[str, Any]:
    r = results[name]
    assert "error" not in r, r["error"]
    return r


@pytest.mark.parametrize("name", ["single_triangle", "sphere_ortho", "cube_perspective", "degenerate_and_empty", "chunked"])
def test_rasterize_matches_reference(results: dict[str, Any], name: str) -> None:
    r = _get(results, name)
    assert r["face_id_mismatch"] == 0
    assert r["bary_err"] < 1e-5 and r["depth_err"] < 1e-6
    assert r["empty_depth_inf"]
    if name == "degenerate_and_empty":
        assert r["empty_ok"]
    else:
        assert r["covered"] > 0


def test_shared_edges(results: dict[str, Any]) -> None:
    r = _get(results, "shared_edges")
    assert r["max_count"] == 1
    assert r["pixels_once"] == r["expected_pixels"] > 0
    assert r["face_id_mismatch"] == 0


def test_interpolate_and_rasterize_uv(results: dict[str, Any]) -> None:
    r = _get(results, "interpolate_and_uv")
    assert r["face_id_mismatch"] == 0 and r["interp_err"] < 1e-5


def test_bake(results: dict[str, Any]) -> None:
    r = _get(results, "bake")
    assert r["covered"] > 0 and r["mask_mismatch"] == 0
    assert r["texture_err"] < 1e-4 and r["weight_err"] < 1e-4


def test_fill(results: dict[str, Any]) -> None:
    r = _get(results, "fill")
    assert r["image_err"] < 1e-5 and r["mesh_err"] < 1e-4

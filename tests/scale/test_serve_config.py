"""The Ray Serve config file: Ray Serve's schema, the application the gateway serves, its job slots."""

from __future__ import annotations

from pathlib import Path

import pytest

from blender_addon.protocol.errors import Step1X3DError
from inference_server.scale.serve_config import (
    IMPORT_PATH,
    capacity,
    default_config,
    load,
    our_app,
    slots,
    stages_for,
    validate,
)

pytest.importorskip("ray.serve")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_shipped_examples_pass_ray_serves_schema_and_give_their_slots() -> None:
    neural = load(EXAMPLES / "ray-serve.yaml")
    validate(neural)
    app = our_app(neural)
    assert stages_for(app["args"]) == ("Geometry", "Texture")
    assert slots(app) == 4 + 6  # geometry autoscales up to 4 replicas, texture has 6, one job each
    weightfree = load(EXAMPLES / "ray-serve-weightfree.yaml")
    validate(weightfree)
    assert stages_for(our_app(weightfree)["args"]) == ("WeightFree",)
    assert slots(our_app(weightfree)) == 4


def test_capacity_is_replicas_times_ongoing_requests() -> None:
    assert capacity({}) == 1
    assert capacity({"num_replicas": 3, "max_ongoing_requests": 2}) == 6
    assert capacity({"autoscaling_config": {"min_replicas": 0, "max_replicas": 5}}) == 5
    assert capacity({"num_replicas": "auto"}) == 1  # autoscaling defaults: one replica at most


def test_default_config_is_one_replica_per_stage() -> None:
    config = default_config("inflate", None, {})
    validate(config)
    app = our_app(config)
    assert app["import_path"] == IMPORT_PATH and slots(app) == 1
    neural = our_app(default_config("auto", "/models/Step1X-3D", {"device": "cuda"}))
    assert [d["name"] for d in neural["deployments"]] == ["Geometry", "Texture"] and slots(neural) == 2
    assert neural["args"]["options"] == {"device": "cuda"}


def test_bad_files_are_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(Step1X3DError, match="cannot read") as refused:
        load(tmp_path / "missing.yaml")
    assert refused.value.code == "bad_config"
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("applications: [", encoding="utf-8")
    with pytest.raises(Step1X3DError, match="not valid YAML"):
        load(bad_yaml)
    with pytest.raises(Step1X3DError, match=r"invalid at applications\.0\.deployments\.0\.num_replicas"):
        validate({"applications": [{"import_path": IMPORT_PATH, "deployments": [{"name": "WeightFree", "num_replicas": -2}]}]})
    with pytest.raises(Step1X3DError, match="exactly one application"):
        our_app({"applications": [{"name": "other", "import_path": "x.y:z"}]})


def test_serve_with_an_unreadable_config_exits_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    missing = tmp_path / "nope.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "inference_server.cli", "serve", "--port", "0", "--results-dir", str(tmp_path / "r"),
         "--engine", "ray", "--serve-config", str(missing)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: cannot read the Ray Serve config {missing}: No such file or directory"

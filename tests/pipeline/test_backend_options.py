"""The weight-free backend's declared options and the in-process check every backend run applies."""

from __future__ import annotations

import pytest

from blender_addon.protocol.options import specs_from_wire
from blender_addon.protocol.settings import JobSettings
from inference_server.pipeline.base import PipelineError
from inference_server.pipeline.inflate import INFLATE_DEPTH, OPTIONS, InflatePipeline
from inference_server.pipeline.options import check_job_options, declared_options, option_value


def test_the_weight_free_backend_declares_its_knobs() -> None:
    caps = InflatePipeline().capabilities()
    declared = specs_from_wire(caps["options"])
    assert declared == OPTIONS
    by_name = {s.name: s for s in declared}
    assert (by_name["inflate_depth"].minimum, by_name["inflate_depth"].maximum, by_name["inflate_depth"].default) == (
        0.05, 2.0, 1.0)
    assert by_name["mirror_front_detail"].kind == "bool" and by_name["mirror_front_detail"].default is False
    assert by_name["octree_resolution"].kind == "int" and by_name["octree_resolution"].default == 384
    assert all(s.help for s in declared)
    assert declared_options(caps) == OPTIONS and declared_options({"loading": True}) is None


def test_an_in_process_run_checks_options_and_fills_defaults() -> None:
    checked = check_job_options(JobSettings(options={"inflate_depth": 0.4}), OPTIONS, "inflate")
    assert checked.options == {"inflate_depth": 0.4, "mirror_front_detail": False, "octree_resolution": 384}
    assert option_value(checked, INFLATE_DEPTH) == 0.4 and option_value(JobSettings(), INFLATE_DEPTH) == 1.0
    with pytest.raises(PipelineError) as err:
        check_job_options(JobSettings(options={"lora": "ink"}), OPTIONS, "inflate")
    assert err.value.code == "bad_settings"
    assert str(err.value) == ("the inflate backend has no option lora (its options: inflate_depth, "
                              "mirror_front_detail, octree_resolution)")
    with pytest.raises(PipelineError, match="option inflate_depth must be between 0.05 and 2.0, got 0.0"):
        option_value(JobSettings(options={"inflate_depth": 0.0}), INFLATE_DEPTH)


def test_legacy_keys_of_other_backends_are_ignored_in_process_too() -> None:
    old = JobSettings.from_wire({"lora": "ink", "symmetry": "symmetric", "inflate_depth": 0.3})
    checked = check_job_options(old, OPTIONS, "inflate")
    assert checked.options["inflate_depth"] == 0.3 and "lora" not in checked.options

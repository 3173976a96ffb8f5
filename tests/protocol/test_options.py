"""Per-backend options: declarations, their checks, the options map in JobSettings, legacy keys."""

from __future__ import annotations

import pytest

from blender_addon.protocol.errors import Step1X3DError
from blender_addon.protocol.options import (
    LEGACY_OPTION_DEFAULTS,
    OptionSpec,
    check_option_map,
    resolve_options,
    specs_from_wire,
    specs_to_wire,
)
from blender_addon.protocol.settings import JobSettings, SettingsError

DEPTH = OptionSpec("inflate_depth", "float", 1.0, "depth", minimum=0.05, maximum=2.0)
STEPS = OptionSpec("grid", "int", 384, "grid", minimum=64, maximum=512)
FLAG = OptionSpec("mirror", "bool", False, "mirror")
STYLE = OptionSpec("lora", "choice", "", "style", choices=("", "ink", "clay"), label="Style")
SPECS = (DEPTH, STEPS, FLAG, STYLE)


def test_declarations_round_trip_through_the_wire() -> None:
    wire = specs_to_wire(SPECS)
    assert wire[0] == {"name": "inflate_depth", "kind": "float", "default": 1.0, "help": "depth",
                       "label": "Inflate depth", "min": 0.05, "max": 2.0}
    assert wire[3]["choices"] == ["", "ink", "clay"] and wire[3]["label"] == "Style"
    back = specs_from_wire(wire)
    assert back == SPECS and [s.display_name for s in back] == ["Inflate depth", "Grid", "Mirror", "Style"]


def test_a_declaration_this_client_cannot_read_is_left_out_not_fatal() -> None:
    wire = specs_to_wire([DEPTH]) + [{"name": "tint", "kind": "colour", "default": "#fff"}, "junk", {"kind": "bool"}]
    assert [s.name for s in specs_from_wire(wire)] == ["inflate_depth"]
    assert specs_from_wire(None) == ()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(name="x", kind="text", default="", help=""), "kind must be one of"),
        (dict(name="x", kind="int", default=1, help="", minimum=0), "needs minimum and maximum"),
        (dict(name="x", kind="choice", default="", help=""), "needs choices"),
        (dict(name="x", kind="float", default=5.0, help="", minimum=0.0, maximum=1.0), "between 0.0 and 1.0"),
    ],
)
def test_a_malformed_declaration_fails_at_once(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        OptionSpec(**kwargs)
    assert fragment in str(err.value)


def test_values_are_checked_against_the_declaration() -> None:
    assert resolve_options(SPECS, {}) == {"inflate_depth": 1.0, "grid": 384, "mirror": False, "lora": ""}
    got = resolve_options(SPECS, {"inflate_depth": 1, "grid": 128.0, "mirror": True, "lora": "ink"})
    assert got == {"inflate_depth": 1.0, "grid": 128, "mirror": True, "lora": "ink"}
    assert isinstance(got["inflate_depth"], float) and isinstance(got["grid"], int)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"inflate_depth": 3.0}, "option inflate_depth must be between 0.05 and 2.0, got 3.0"),
        ({"inflate_depth": True}, "option inflate_depth must be between 0.05 and 2.0, got True"),
        ({"grid": 100.5}, "option grid must be a whole number between 64 and 512, got 100.5"),
        ({"mirror": 1}, "option mirror must be true or false, got 1"),
        ({"lora": "oil"}, "option lora must be one of '', ink, clay, got 'oil'"),
        ({"colour": "red", "zoom": 2}, "the test backend has no option colour, zoom (its options: grid, inflate_depth, "
                                       "lora, mirror)"),
    ],
)
def test_a_bad_option_is_one_sentence_naming_it_and_what_is_allowed(given: dict, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        resolve_options(SPECS, given, backend="the test backend")
    assert str(err.value) == message
    assert isinstance(err.value, Step1X3DError) and err.value.code == "bad_settings"


def test_the_options_map_shape_is_bounded() -> None:
    for bad, fragment in (([1], "must be a map"), ({"": 1}, "option names are"), ({"x": [1]}, "must be true/false"),
                          ({"x": "a" * 201}, "longer than 200"), ({f"o{i}": 1 for i in range(65)}, "at most 64")):
        with pytest.raises(SettingsError) as err:
            check_option_map(bad)
        assert fragment in str(err.value)


def test_job_settings_carry_options_and_check_them_when_the_declaration_is_known() -> None:
    s = JobSettings.from_wire({"seed": 3, "options": {"grid": 128}})
    assert s.options == {"grid": 128} and JobSettings.from_wire(s.to_wire()) == s
    checked = JobSettings.from_wire(s.to_wire(), SPECS)
    assert checked.options == {"inflate_depth": 1.0, "grid": 128, "mirror": False, "lora": ""}
    with pytest.raises(SettingsError, match="has no option grid"):
        JobSettings.from_wire(s.to_wire(), (DEPTH,), backend="the weight-free backend")


def test_legacy_top_level_keys_become_options_and_are_dropped_where_not_declared() -> None:
    # What a protocol 1.0 client sends: every old key, most at their old defaults.
    old = {"seed": 1, **LEGACY_OPTION_DEFAULTS, "inflate_depth": 0.5, "lora": "ink"}
    s = JobSettings.from_wire(old)
    assert s.options == {"inflate_depth": 0.5, "lora": "ink"}  # old defaults meant "not set"
    assert s.legacy_keys == ("inflate_depth", "lora")
    wire = s.to_wire()
    assert wire["inflate_depth"] == 0.5 and wire["options"] == {}  # still legacy until checked
    assert JobSettings.from_wire(wire) == s
    # Checked against a backend that declares only inflate_depth: lora is ignored, as it always was.
    assert JobSettings.from_wire(old, (DEPTH,)).options == {"inflate_depth": 0.5}
    # A legacy value is still checked when its option exists.
    with pytest.raises(SettingsError, match="option inflate_depth must be between"):
        JobSettings.from_wire({"inflate_depth": 9.0}, (DEPTH,))
    # An explicit options entry wins over the legacy key.
    assert JobSettings.from_wire({"inflate_depth": 0.5, "options": {"inflate_depth": 0.7}}).options == {
        "inflate_depth": 0.7}


def test_unknown_top_level_keys_are_still_refused() -> None:
    with pytest.raises(SettingsError, match=r"unknown setting\(s\): grid"):
        JobSettings.from_wire({"grid": 128})

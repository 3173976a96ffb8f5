"""JobSettings is the one schema both ends enforce: ranges, choices, unknown keys."""

import math

import pytest

from blender_addon.protocol.settings import JobSettings, SettingsError, advertised_ranges


def test_defaults_are_upstreams() -> None:
    s = JobSettings.from_wire({})
    assert (s.steps, s.guidance, s.texture_steps, s.texture_guidance) == (50, 7.5, 50, 3.0)
    assert (s.max_faces, s.texture_size, s.mode, s.options) == (200_000, 2048, "full", {})


def test_round_trip_through_wire_dict() -> None:
    s = JobSettings(seed=7, steps=20, lods=(1.0, 0.5), mode="geometry")
    assert JobSettings.from_wire(s.to_wire()) == s
    assert s.to_wire()["lods"] == [1.0, 0.5]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"steps": 0}, "steps must be between 1 and 200"),
        ({"steps": 2.5}, "whole number"),
        ({"steps": True}, "must be a number"),
        ({"guidance": math.nan}, "must be a number"),
        ({"texture_size": 3000}, "texture_size must be one of"),
        ({"mode": "paint"}, "mode must be one of"),
        ({"lods": [1.0, 2.0]}, "between 0.01 and 1.0"),
        ({"lods": [1.0] * 9}, "at most 4"),
        ({"pbr": 1}, "true or false"),
        ({"bogus": 1, "other": 2}, "unknown setting(s): bogus, other"),
    ],
)
def test_bad_values_name_the_setting(data: dict, fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        JobSettings.from_wire(data)
    assert fragment in str(err.value)


def test_not_a_map_is_refused() -> None:
    with pytest.raises(SettingsError):
        JobSettings.from_wire([1, 2])


def test_whole_floats_are_accepted_as_ints() -> None:
    assert JobSettings.from_wire({"seed": 12.0}).seed == 12


def test_advertised_ranges_cover_every_checked_setting() -> None:
    table = advertised_ranges()
    assert table["steps"] == {"type": "int", "min": 1, "max": 200}
    assert table["texture_size"]["choices"] == [512, 1024, 2048, 4096]
    assert table["defaults"]["guidance"] == 7.5


def test_replace_validates() -> None:
    s = JobSettings().replace(seed=3)
    assert s.seed == 3
    with pytest.raises(SettingsError):
        JobSettings().replace(seed=-1)


def test_size_is_unset_by_default_and_checked_when_set() -> None:
    assert JobSettings().size is None and JobSettings.from_wire({"size": None}).size is None
    assert JobSettings.from_wire({"size": 0.1}).size == pytest.approx(0.1)
    assert JobSettings.from_wire(JobSettings(size=2.5).to_wire()).size == 2.5
    for bad, fragment in ((0.0, "size must be between"), ("big", "size must be a number")):
        with pytest.raises(SettingsError) as err:
            JobSettings.from_wire({"size": bad})
        assert fragment in str(err.value)


def test_views_name_each_image_and_slots_leave_gaps_empty() -> None:
    from blender_addon.protocol.settings import view_slots

    assert JobSettings().views == ()
    assert JobSettings.from_wire({"views": ["front", "back"]}).views == ("front", "back")
    assert JobSettings(views=("front", "left")).to_wire()["views"] == ["front", "left"]
    for bad, fragment in ((["back"], "start with the front"), (["front", "front"], "at most once"),
                          (["front", "top"], "at most once"), ("front", "list")):
        with pytest.raises(SettingsError, match=fragment):
            JobSettings.from_wire({"views": bad})
    assert view_slots(["F", "R"], ()) == ["F", "R"]  # no names: the slots in order
    assert view_slots(["F", "B"], ("front", "back")) == ["F", None, "B"]
    assert view_slots(["F", "L"], ("front", "left")) == ["F", None, None, "L"]
    with pytest.raises(SettingsError, match="names 1 view"):
        view_slots(["F", "B"], ("front",))

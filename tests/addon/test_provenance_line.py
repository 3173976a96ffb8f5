"""The panel's provenance line (pure wording, no bpy), fed what the weight-free backend really reports."""

from __future__ import annotations

import json
from typing import Any

from blender_addon.core.provenance_line import provenance_line
from blender_addon.protocol.provenance import AI_GENERATED, BACKEND, INFERRED, property_name
from inference_server.pipeline.inflate import what_was_seen


def _as_properties(provenance: dict[str, Any]) -> dict[str, Any]:
    """Custom properties as the importer stores them: scalars as they are, lists as JSON text."""
    props: dict[str, Any] = {property_name(AI_GENERATED): True}
    for key, value in provenance.items():
        props[property_name(key)] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return props


def test_front_only_lists_every_guess_sorted_with_backend_and_seed() -> None:
    seen = what_was_seen([True, False, False, False], "full", {})
    props = _as_properties({"backend": "inflate", "seed": 3, **seen})
    assert provenance_line(props) == "Inferred, not seen: back, depth, sides (weight-free, seed 3)"


def test_side_view_removes_sides_and_back_view_removes_back() -> None:
    seen = what_was_seen([True, True, False, False], "geometry", {})
    assert provenance_line(_as_properties({"backend": "inflate", "seed": 0, **seen})) == \
        "Inferred, not seen: back, depth (weight-free, seed 0)"
    seen = what_was_seen([True, True, True, True], "texture", {})  # every view, an existing mesh painted
    assert provenance_line(_as_properties({"backend": "inflate", "seed": 12, **seen})) == \
        "Nothing inferred: every side was seen (weight-free, seed 12)"


def test_a_backend_without_the_list_and_objects_that_are_not_ours() -> None:
    assert provenance_line(_as_properties({"backend": "step1x3d", "seed": 5})) == "AI-generated (Step1X-3D, seed 5)"
    assert provenance_line(_as_properties({"backend": "test-cube"})) == "AI-generated (test-cube)"
    assert provenance_line({}) == ""
    assert provenance_line({"cycles": 1, "step1x3d_lod": 1}) == ""  # a user's own object, or a bare LOD child
    # A list handed back as a sequence (not JSON text) reads the same.
    props = {property_name(BACKEND): "inflate", property_name(INFERRED): ("depth", "back")}
    assert provenance_line(props) == "Inferred, not seen: back, depth (weight-free)"

"""One key spelling: a job's GLB ``extras`` and the Blender object's custom properties name the same keys.

The GLB comes from ``step1x3d generate`` and the object from the add-on's blocking API, both
for the same job sent to one real server on loopback (``tests.addon.pipelines:CubePipeline``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blender_addon.protocol import provenance as prov

from .assets import reference_png

CUBE = "tests.addon.pipelines:CubePipeline"


def test_glb_extras_and_custom_properties_use_the_same_keys(bpy: Any, addon: Any, start_server: Any,
                                                            tmp_path: Path) -> None:
    from blender_addon import api
    from inference_server.cli import main
    from inference_server.export.glb_read import glb_to_asset

    front = tmp_path / "crate.png"
    front.write_bytes(reference_png(64))
    address = start_server(CUBE)
    glb = tmp_path / "crate.glb"
    assert main(["generate", str(front), "-o", str(glb), "--server", address, "--seed", "5"]) == 0
    extras = glb_to_asset(glb.read_bytes()).provenance

    addon.server_address = address
    obj = api.generate([str(front)], seed=5, timeout=60)
    props = {key for key in obj.keys() if key.startswith(prov.PROVENANCE_PREFIX)} - {prov.NOTES_PROPERTY}

    assert props == {prov.property_name(key) for key in extras}
    # The common keys are there, spelt as protocol/provenance.py spells them, on both sides.
    for key in (prov.AI_GENERATED, prov.SOURCE_IMAGES, prov.JOB_ID, prov.BACKEND, prov.STAGE_SECONDS):
        assert key in extras and prov.property_name(key) in props
    assert obj[prov.property_name(prov.AI_GENERATED)] is True and extras[prov.AI_GENERATED] is True
    assert obj[prov.property_name(prov.SOURCE_IMAGES)] == '["crate.png"]' and extras[prov.SOURCE_IMAGES] == ["crate.png"]
    assert obj[prov.property_name(prov.SEED)] == 5 == extras[prov.SEED]

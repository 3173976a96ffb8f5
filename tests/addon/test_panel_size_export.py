"""The panel's size setting, provenance line and Export box, with the real add-on against real servers.

Size: the weight-free backend (a real ``step1x3d serve``) scales the result; the imported object's
largest dimension is the length chosen in the panel. Export: the engine buttons are drawn (usable
when the active object is a mesh) and the operator, run as a script runs it (execute with a
filepath), writes an FBX that a fresh Blender process re-imports with the engine's axes and size.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .assets import reference_png
from .conftest import ROOT
from .test_ui import FakeLayout, Stand

CUBE = "tests.addon.pipelines:CubePipeline"
FBX_CHECK = ROOT / "tests" / "tools" / "blender_fbx_check.py"


class EnabledLayout(FakeLayout):
    """Records, with each operator, whether the layout holding it is enabled."""

    def _child(self) -> FakeLayout:
        return EnabledLayout(self._bpy, self.calls)

    def operator(self, idname: str, **kwargs: Any) -> Any:
        props = super().operator(idname, **kwargs)
        self.calls.append(f"  enabled={self.enabled}")
        return props


def _draw(bpy: Any, cls: Any) -> list[str]:
    calls: list[str] = []
    cls.draw(Stand(EnabledLayout(bpy, calls)), bpy.context)
    return calls


def _export_buttons(calls: list[str]) -> dict[str, bool]:
    out = {}
    for i, call in enumerate(calls):
        if call.startswith("operator:step1x3d.export_"):
            out[call.split(":")[1]] = calls[i + 1] == "  enabled=True"
    return out


@pytest.fixture
def ref_image(tmp_path: Path) -> str:
    path = tmp_path / "mug.png"
    path.write_bytes(reference_png(128))
    return str(path)


def test_size_from_the_panel_sets_the_imported_largest_dimension(bpy: Any, addon: Any, start_server: Any,
                                                                 ref_image: str) -> None:
    """Geometry only with LODs and a size: the job that used to fail in the LOD stage (no UVs) imports,
    every level at the chosen size; the panel then shows what the backend inferred."""
    from blender_addon.blender import panel

    addon.server_address = start_server("inflate")
    st = bpy.context.window_manager.step1x3d
    st.use_size, st.size, st.max_faces, st.lod_levels = True, 0.25, 2000, 2
    assert "prop:use_size" in _draw(bpy, panel.STEP1X3D_PT_settings)
    assert bpy.ops.step1x3d.generate(images=[{"name": ref_image}], mode="geometry", seed=3) == {"FINISHED"}
    obj = bpy.data.objects["mug"]
    bpy.context.view_layer.update()
    assert max(obj.dimensions) == pytest.approx(0.25, rel=1e-4)
    lod = bpy.data.objects["mug_LOD1"]
    assert max(lod.dimensions) == pytest.approx(0.25, rel=0.02)  # the coarser level, same scale
    assert len(lod.data.polygons) == pytest.approx(len(obj.data.polygons) / 2, rel=0.05)

    # The provenance line, for the result and for its LOD child (which reads its asset's).
    for active in (obj, lod):
        bpy.context.view_layer.objects.active = active
        main = _draw(bpy, panel.STEP1X3D_PT_main)
        assert "label:Inferred, not seen: back, depth, sides (weight-free, seed 3)" in main

    # Off again: no size on the wire (the backend's own scale, about 1.9 units for this disc) ...
    from blender_addon.blender import properties, runtime

    st.use_size, st.size = False, 2.0
    assert properties.job_settings(st, 3)["size"] is None
    # ... and History's Reuse puts the job's size back.
    entry = next(e for e in runtime.history_entries() if e.name == "mug")
    assert bpy.ops.step1x3d.history_reuse(job_id=entry.job_id) == {"FINISHED"}
    assert st.use_size and st.size == pytest.approx(0.25)


def test_presets_save_and_apply_the_size(bpy: Any, addon: Any) -> None:
    st = bpy.context.window_manager.step1x3d
    rna = st.bl_rna.properties["size"]
    assert (rna.unit, rna.subtype) == ("LENGTH", "DISTANCE")  # shown in the scene's length unit
    st.use_size, st.size, st.preset_name = True, 0.1, "Mugs"
    assert bpy.ops.step1x3d.preset_save() == {"FINISHED"}
    st.use_size, st.size = False, 3.0
    st.preset = "Mugs"
    assert bpy.ops.step1x3d.preset_apply() == {"FINISHED"}
    assert st.use_size and st.size == pytest.approx(0.1)
    from blender_addon.blender import properties

    assert properties.job_settings(st, 1)["size"] == pytest.approx(0.1)
    # A built-in preset without a size leaves the panel's size as it is.
    st.preset = "Draft"
    assert bpy.ops.step1x3d.preset_apply() == {"FINISHED"} and st.use_size and st.size == pytest.approx(0.1)
    # A preset saved with the toggle off turns it off.
    st.use_size, st.preset_name = False, "Native"
    assert bpy.ops.step1x3d.preset_save() == {"FINISHED"}
    st.use_size, st.preset = True, "Native"
    assert bpy.ops.step1x3d.preset_apply() == {"FINISHED"} and not st.use_size
    assert properties.job_settings(st, 1)["size"] is None


def _fbx_report(path: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(FBX_CHECK), str(path)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("@@JSON@@"):
            return dict(json.loads(line[len("@@JSON@@"):]))
    raise AssertionError(f"FBX check failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")


def test_export_box_buttons_and_the_unity_operator(bpy: Any, addon: Any, start_server: Any, ref_image: str,
                                                   tmp_path: Path) -> None:
    from blender_addon.blender import panel

    bpy.context.view_layer.objects.active = None
    assert _export_buttons(_draw(bpy, panel.STEP1X3D_PT_main)) == {
        "step1x3d.export_unity": False, "step1x3d.export_unreal": False}

    addon.server_address = start_server(CUBE)
    assert bpy.ops.step1x3d.generate(images=[{"name": ref_image}], name="crate") == {"FINISHED"}
    obj = bpy.data.objects["crate"]
    from mathutils import Matrix

    obj.data.transform(Matrix.Diagonal((0.2, 0.4, 0.8, 1.0)))  # the 1 m cube made 0.2 x 0.4 x 0.8 m
    bpy.context.view_layer.objects.active = obj
    for other in bpy.context.view_layer.objects:
        other.select_set(other == obj)
    assert _export_buttons(_draw(bpy, panel.STEP1X3D_PT_main)) == {
        "step1x3d.export_unity": True, "step1x3d.export_unreal": True}

    out = tmp_path / "crate.fbx"
    assert bpy.ops.step1x3d.export_unity(filepath=str(out)) == {"FINISHED"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("crate")) == [
        "crate.fbx", "crate_BaseColor.png", "crate_MetallicSmoothness.png", "crate_Normal.png", "crate_Occlusion.png"]
    report = _fbx_report(out)
    settings = report["file"]["settings"]
    assert settings["UpAxis"] == 1 and settings["UnitScaleFactor"] == 100.0  # Unity: Y up, metres
    (bounds,) = report["file"]["bounds"]
    extent = [hi - lo for lo, hi in zip(bounds["min"], bounds["max"])]
    assert extent == pytest.approx([0.2, 0.8, 0.4], abs=1e-5)  # Blender's Z (0.8 m) is the file's Y (up)
    (back,) = report["objects"]
    # Blender's importer keeps the file's Y-up mesh and stands it up with +90 degrees about X:
    # local (0.2, 0.8, 0.4) m is (0.2, 0.4, 0.8) m in the world, as exported; scale 1 (metres).
    assert back["rotation"] == pytest.approx([math.pi / 2, 0.0, 0.0], abs=1e-6)
    assert back["scale"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert back["dimensions"] == pytest.approx([0.2, 0.8, 0.4], abs=1e-5)
    assert back["materials"][0]["feeds"]["Metallic"]["image"] == "crate_MetallicSmoothness.png"

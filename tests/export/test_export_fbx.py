"""FBX for Unity and Unreal through Blender (the bpy module), read back by Blender in another process.

Each export runs ``step1x3d convert`` in a subprocess and is checked by
tests/tools/blender_fbx_check.py in another one (bpy keeps global state; tests never
import it in-process here): the file's own axis/unit records and raw vertex bounds,
the embedded maps, Blender's re-import (dimensions, material inputs, provenance), and
the packed maps written beside the FBX, pixel for pixel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from PIL import Image

from export_helpers import PROVENANCE
from inference_server.assets import Asset, MeshData, PBRMaterial
from inference_server.export import save_asset
from inference_server.uv import unwrap

pytest.importorskip("bpy", reason="needs the bpy wheel (pip install 'bpy==4.5.*')")

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "tests" / "tools" / "blender_fbx_check.py"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=None if env is None else {**os.environ, **env})


def fbx_report(path: Path) -> dict[str, Any]:
    proc = _run(str(CHECK), str(path))
    for line in proc.stdout.splitlines():
        if line.startswith("@@JSON@@"):
            return dict(json.loads(line[len("@@JSON@@"):]))
    raise AssertionError(f"FBX check failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="module")
def box_glb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Asset]:
    """A box in front of and above the origin (x in [-0.1, 0.1], y in [0, 0.4], z in [0, 0.1] m):
    every axis and sign is visible in the bounds. ORM: metallic on the left half, roughness ramp."""
    box = trimesh.creation.box((0.2, 0.4, 0.1))
    box.apply_translation((0.0, 0.2, 0.05))
    mesh = unwrap(MeshData(box.vertices.astype(np.float32), box.faces.astype(np.uint32), smooth=False),
                  texture_size=64)
    xx = np.tile(np.arange(64, dtype=np.float64) / 63.0, (64, 1))
    orm = np.dstack([np.full((64, 64), 200), 40 + 180 * xx, np.where(xx < 0.5, 255, 0)]).astype(np.uint8)
    base = np.dstack([xx * 255, np.full((64, 64), 90), 255 - xx * 255]).astype(np.uint8)
    normal = np.dstack([np.full((64, 64), 128), np.full((64, 64), 128), np.full((64, 64), 255)]).astype(np.uint8)
    material = PBRMaterial(base_color=base, orm=orm, normal=normal, metallic_factor=1.0, roughness_factor=1.0)
    asset = Asset(mesh=mesh, material=material, provenance=dict(PROVENANCE))
    path = tmp_path_factory.mktemp("fbx") / "box.glb"
    save_asset(asset, path)
    return path, asset


def _convert(glb: Path, out: Path, engine: str) -> list[str]:
    proc = _run("-m", "inference_server.cli", "convert", str(glb), str(out), "--engine", engine, "--size", "0.8")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {out}") and proc.stdout.count("\n") == 1  # Blender's chatter stays out
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.stem))


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_unity_metres_y_up_metallic_smoothness(box_glb: tuple[Path, Asset], tmp_path: Path) -> None:
    glb, asset = box_glb
    out = tmp_path / "u.fbx"
    assert _convert(glb, out, "unity") == ["u.fbx", "u_BaseColor.png", "u_MetallicSmoothness.png", "u_Normal.png",
                                           "u_Occlusion.png"]
    report = fbx_report(out)
    settings = report["file"]["settings"]
    assert settings["UpAxis"] == 1 and settings["UnitScaleFactor"] == 100.0  # Y up; 1 unit = 100 cm = 1 m
    (bounds,) = report["file"]["bounds"]
    # --size 0.8 doubles the box; the file keeps glTF's frame (Y up, front +Z) in metres.
    np.testing.assert_allclose(bounds["min"], [-0.2, 0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(bounds["max"], [0.2, 0.8, 0.2], atol=1e-5)
    assert sorted(v["file"] for v in report["file"]["videos"]) == [
        "u.fbm/u_BaseColor.png", "u.fbm/u_MetallicSmoothness.png", "u.fbm/u_Normal.png"]
    assert all(v["bytes"] > 0 for v in report["file"]["videos"])  # embedded

    (obj,) = report["objects"]
    assert sorted(obj["dimensions"]) == pytest.approx([0.2, 0.4, 0.8], abs=1e-5)  # Blender reads it back in metres
    assert obj["props"]["seed"] == "7" and obj["props"]["ai_generated"] == "1"
    feeds = obj["materials"][0]["feeds"]
    assert feeds["Base Color"]["image"] == "u_BaseColor.png" and feeds["Base Color"]["size"] == [64, 64]
    assert feeds["Metallic"]["image"] == "u_MetallicSmoothness.png"
    assert feeds["Normal"]["node"] == "ShaderNodeNormalMap" and feeds["Normal"]["image"] == "u_Normal.png"
    assert report["metallic_image"]["channels"] == 4

    assert asset.material is not None and asset.material.orm is not None
    orm = asset.material.orm.astype(np.int64)
    packed = _png(out.with_name("u_MetallicSmoothness.png")).astype(np.int64)
    assert packed.shape == (64, 64, 4)
    assert np.abs(packed[:, :, 0] - orm[:, :, 2]).max() <= 1  # metallic in R (and G, B)
    assert np.abs(packed[:, :, 3] - (255 - orm[:, :, 1])).max() <= 1  # smoothness = 1 - roughness in A
    assert np.abs(_png(out.with_name("u_Occlusion.png"))[:, :, 1].astype(np.int64) - orm[:, :, 0]).max() <= 1
    mean = report["metallic_image"]["mean"]
    assert mean[0] == pytest.approx(orm[:, :, 2].mean() / 255, abs=0.01)
    assert mean[3] == pytest.approx(1 - orm[:, :, 1].mean() / 255, abs=0.01)


def test_unreal_centimetres_z_up_orm(box_glb: tuple[Path, Asset], tmp_path: Path) -> None:
    glb, asset = box_glb
    out = tmp_path / "r.fbx"
    assert _convert(glb, out, "unreal") == ["r.fbx", "r_BaseColor.png", "r_Normal.png", "r_ORM.png"]
    assert (out.with_name("r_ORM.png").stat().st_mode & 0o044) == (out.stat().st_mode & 0o044)  # not private
    report = fbx_report(out)
    settings = report["file"]["settings"]
    assert settings["UpAxis"] == 2 and settings["UnitScaleFactor"] == 1.0  # Z up, centimetres
    (bounds,) = report["file"]["bounds"]
    # Blender's frame in cm: glTF (x, y, z) -> (x, -z, y); the front (glTF +Z) faces -Y.
    np.testing.assert_allclose(bounds["min"], [-20.0, -20.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(bounds["max"], [20.0, 0.0, 80.0], atol=1e-3)
    (obj,) = report["objects"]
    assert obj["dimensions"] == pytest.approx([0.4, 0.2, 0.8], abs=1e-5)  # Blender: metres, Z up, unrotated
    assert obj["rotation"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    feeds = obj["materials"][0]["feeds"]
    assert feeds["Base Color"]["image"] == "r_BaseColor.png" and feeds["Normal"]["image"] == "r_Normal.png"
    assert asset.material is not None and asset.material.orm is not None
    packed = _png(out.with_name("r_ORM.png")).astype(np.int64)
    assert packed.shape == (64, 64, 3) and np.abs(packed - asset.material.orm).max() <= 1  # ORM, as Unreal packs


def test_without_bpy_one_sentence(box_glb: tuple[Path, Asset], tmp_path: Path) -> None:
    glb, _ = box_glb
    code = ("import sys; sys.modules['bpy'] = None; from inference_server.cli import main; "
            f"sys.exit(main(['convert', {str(glb)!r}, {str(tmp_path / 'x.fbx')!r}]))")
    proc = _run("-c", code)  # bpy made unimportable, as on an install without it
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: writing FBX needs Blender's Python module")
    assert list(tmp_path.iterdir()) == []


ADDON_SCRIPT = """
import sys
import bpy
import addon_utils
sys.path.insert(0, {root!r})
bpy.ops.wm.read_factory_settings(use_empty=True)
addon_utils.enable("blender_addon", default_set=True)
bpy.ops.import_scene.gltf(filepath={glb!r})
obj = [o for o in bpy.context.scene.objects if o.type == "MESH"][0]
obj.select_set(False)
print("poll-empty", bpy.ops.step1x3d.export_unreal.poll())
obj.select_set(True)
before = sorted(m.name for m in bpy.data.materials), sorted(i.name for i in bpy.data.images)
print("result", sorted(bpy.ops.step1x3d.export_unreal(filepath={out!r})))
after = sorted(m.name for m in bpy.data.materials), sorted(i.name for i in bpy.data.images)
print("scene-unchanged", before == after, obj.select_get())
sys.path.insert(0, {tools!r})
import json, blender_fbx_check
print("@@JSON@@" + json.dumps(blender_fbx_check._file_records({out!r})))
"""


def test_addon_operator_exports_and_leaves_the_scene_alone(box_glb: tuple[Path, Asset], tmp_path: Path) -> None:
    glb, _ = box_glb
    out = tmp_path / "op.fbx"
    user = {"BLENDER_USER_RESOURCES": str(tmp_path / "blender"), "STEP1X3D_USER_DIR": str(tmp_path / "addon")}
    script = ADDON_SCRIPT.format(root=str(ROOT), tools=str(CHECK.parent), glb=str(glb), out=str(out))
    proc = _run("-c", script, env=user)
    assert "result ['FINISHED']" in proc.stdout, proc.stderr[-3000:]
    assert "poll-empty False" in proc.stdout  # nothing selected: the button is greyed out
    assert "scene-unchanged True True" in proc.stdout  # temporary materials/images removed, selection kept
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("@@JSON@@")]
    records = json.loads(line[len("@@JSON@@"):])
    assert records["settings"]["UnitScaleFactor"] == 1.0
    np.testing.assert_allclose(records["bounds"][0]["max"], [10.0, 0.0, 40.0], atol=1e-3)  # no --size: 0.4 m
    assert (tmp_path / "op_ORM.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left

"""``step1x3d convert``: a GLB result to other formats, with --size in each format's units and provenance kept."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest

from inference_server.assets import Asset
from inference_server.cli import main
from inference_server.export import save_asset
from inference_server.export.glb_read import read_gltf


@pytest.fixture()
def result_glb(textured_asset: Asset, tmp_path: Path) -> Path:
    (path,) = save_asset(textured_asset, tmp_path / "result.glb")
    return path


def _extent(points: np.ndarray) -> np.ndarray:
    return points.max(axis=0) - points.min(axis=0)


def test_size_and_provenance_glb_to_glb(result_glb: Path, textured_asset: Asset, capsys: pytest.CaptureFixture[str]) -> None:
    out = result_glb.with_name("mug.glb")
    assert main(["convert", str(result_glb), str(out), "--size", "0.1"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    back = read_gltf(out)
    assert _extent(back.mesh.positions).max() == pytest.approx(0.1, rel=1e-6)
    ratio = _extent(back.mesh.positions) / _extent(textured_asset.mesh.positions)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)  # uniform scale, proportions kept
    assert back.provenance["seed"] == 7 and back.provenance["size"] == 0.1
    assert back.provenance["converted_from"] == "result.glb"


def test_size_in_millimetres_for_3mf(result_glb: Path) -> None:
    out = result_glb.with_name("print.3mf")
    assert main(["convert", str(result_glb), str(out), "--size", "0.05"]) == 0
    with zipfile.ZipFile(out) as z:
        root = ET.fromstring(z.read("3D/3dmodel.model"))
    xyz = np.array([[float(v.get(k)) for k in "xyz"] for v in root.iter() if v.tag.endswith("}vertex")])
    assert _extent(xyz).max() == pytest.approx(50.0, abs=1e-3)
    meta = {m.get("name"): m.text for m in root if m.tag.endswith("}metadata")}
    assert json.loads(meta["s1x:provenance"])["converted_from"] == "result.glb"


def test_usdz_keeps_provenance(result_glb: Path) -> None:
    pytest.importorskip("pxr")
    from pxr import Usd, UsdGeom

    out = result_glb.with_name("ar.usdz")
    assert main(["convert", str(result_glb), str(out), "--size", "2"]) == 0
    stage = Usd.Stage.Open(str(out))
    points = np.array(UsdGeom.Mesh(stage.GetPrimAtPath("/Asset/Mesh")).GetPointsAttr().Get())
    assert _extent(points).max() == pytest.approx(2.0, rel=1e-6)  # metersPerUnit 1
    prov = json.loads(stage.GetRootLayer().customLayerData["provenance"])
    assert prov["seed"] == 7 and prov["size"] == 2.0 and prov["backend"] == "inflate"


@pytest.mark.parametrize(("args", "text"), [
    (["IN", "out.xyz"], "unsupported export format '.xyz' for out.xyz; use one of .glb, .gltf"),
    (["IN", "out.glb", "--size", "0"], "size must be between 0.001 and 1000"),
    (["IN", "IN"], "OUT is the same file as IN"),
    (["IN", "missing/out.glb"], "does not exist"),
    (["nothere.glb", "out.glb"], "nothere.glb does not exist"),
    (["notes.txt", "out.glb"], "convert reads results written by step1x3d (.glb, .gltf), not .txt"),
])
def test_bad_arguments_one_line(result_glb: Path, capsys: pytest.CaptureFixture[str], args: list[str], text: str) -> None:
    folder = result_glb.parent
    files = [str(result_glb) if a == "IN" else str(folder / a) for a in args[:2]]
    argv = [*files, *args[2:]]
    assert main(["convert", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and text in err
    assert sorted(p.name for p in folder.iterdir()) == ["result.glb"]  # nothing written


def test_broken_glb_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"glTF" + b"\x00" * 30)
    assert main(["convert", str(bad), str(tmp_path / "out.obj")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.glb" in err and "Traceback" not in err
    assert not (tmp_path / "out.obj").exists()


def test_lods_are_kept_or_the_loss_is_said(textured_asset: Asset, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from inference_server.export import build_lods

    with_lods = Asset(mesh=textured_asset.mesh, material=textured_asset.material,
                      lods=build_lods(textured_asset.mesh, (0.5,)), provenance=dict(textured_asset.provenance))
    (glb,) = save_asset(with_lods, tmp_path / "lods.glb")
    assert main(["convert", str(glb), str(tmp_path / "copy.gltf")]) == 0
    assert "note" not in capsys.readouterr().err and len(read_gltf(tmp_path / "copy.gltf").lods) == 1
    assert main(["convert", str(glb), str(tmp_path / "flat.stl")]) == 0
    assert "note: 1 LODs are not written to .stl; only .glb, .gltf, .usd, .usda, .usdc, .usdz hold them " \
        "(--lods-as-files" in capsys.readouterr().err
    assert main(["convert", str(glb), str(tmp_path / "split.stl"), "--lods-as-files"]) == 0
    assert "note" not in capsys.readouterr().err and (tmp_path / "split_lod1.stl").is_file()

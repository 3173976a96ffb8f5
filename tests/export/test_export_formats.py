"""USD/USDZ (checked by usd-core's validators + ARKit rules), 3MF, glTF, the GLB reader and the format list."""

from __future__ import annotations

import io
import json
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export_helpers import PROVENANCE
from inference_server.assets import Asset
from inference_server.export import SUFFIXES, asset_to_glb, save_asset
from blender_addon.protocol.errors import Step1X3DError
from inference_server.export.glb_read import glb_to_asset, read_gltf
from inference_server.export.weld import weld
from usd_rules import arkit_errors, validation_errors


def test_glb_reads_back_everything_we_wrote(textured_asset: Asset) -> None:
    from inference_server.export import build_lods

    asset = Asset(mesh=textured_asset.mesh, material=textured_asset.material, provenance=dict(PROVENANCE),
                  lods=build_lods(textured_asset.mesh, (0.5,)))
    back = glb_to_asset(asset_to_glb(asset))
    np.testing.assert_array_equal(back.mesh.positions, asset.mesh.positions)
    np.testing.assert_array_equal(back.mesh.faces, asset.mesh.faces)
    np.testing.assert_array_equal(back.mesh.uvs, asset.mesh.uvs)
    assert len(back.lods) == 1 and back.lods[0].face_count == asset.lods[0].face_count
    assert back.material is not None and asset.material is not None
    for slot in ("base_color", "orm", "normal"):
        np.testing.assert_array_equal(getattr(back.material, slot), getattr(asset.material, slot))  # PNG: lossless
    assert back.provenance["seed"] == 7 and back.provenance["ai_generated"] is True
    assert back.provenance["settings"] == {"texture_size": 512, "lods": [1.0, 0.5]}


def test_gltf_is_self_contained_and_reads_back(textured_asset: Asset, tmp_path: Path) -> None:
    (path,) = save_asset(textured_asset, tmp_path / "a.gltf")
    gltf = json.loads(path.read_text())
    assert gltf["buffers"][0]["uri"].startswith("data:application/octet-stream;base64,")
    assert gltf["asset"]["extras"]["seed"] == 7
    back = read_gltf(path)
    np.testing.assert_array_equal(back.mesh.positions, textured_asset.mesh.positions)
    assert back.material is not None and textured_asset.material is not None
    np.testing.assert_array_equal(back.material.orm, textured_asset.material.orm)


def test_reader_refuses_what_it_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(Step1X3DError, match="x.glb is not a binary glTF") as refused:
        glb_to_asset(b"PK\x03\x04 not a glb at all", "x.glb")
    assert refused.value.code == "bad_file"
    gltf = {"asset": {"version": "2.0"}, "scenes": [{"nodes": [0, 1]}], "nodes": [{"mesh": 0}, {"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}]}
    chunk = json.dumps(gltf).encode()
    chunk += b" " * (-len(chunk) % 4)
    data = b"glTF" + (2).to_bytes(4, "little") + (20 + len(chunk)).to_bytes(4, "little") \
        + len(chunk).to_bytes(4, "little") + b"JSON" + chunk
    with pytest.raises(Step1X3DError, match="two.glb has 2 mesh objects") as refused:
        glb_to_asset(data, "two.glb")
    assert refused.value.code == "bad_file"


def test_unknown_suffix_lists_every_known_one(textured_asset: Asset, tmp_path: Path) -> None:
    assert SUFFIXES == (".glb", ".gltf", ".obj", ".ply", ".stl", ".3mf", ".usd", ".usda", ".usdc", ".usdz",
                        ".step", ".stp", ".fbx")
    with pytest.raises(ValueError, match=r"unsupported export format '\.dae' for a\.dae; use one of \.glb, .*\.fbx$"):
        save_asset(textured_asset, tmp_path / "a.dae")
    assert list(tmp_path.iterdir()) == []


# --- USD ---------------------------------------------------------------------------

def _shader_input(stage, prim_path: str, name: str):  # type: ignore[no-untyped-def]
    from pxr import UsdShade

    return UsdShade.Shader(stage.GetPrimAtPath(prim_path)).GetInput(name)


def _source(stage, name: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(texture file, channel) feeding PreviewSurface input ``name``."""
    from pxr import UsdShade

    source, output, _ = _shader_input(stage, "/Asset/Materials/Material/PreviewSurface", name).GetConnectedSource()
    file = UsdShade.Shader(source.GetPrim()).GetInput("file").Get().path
    return file, output


def test_usdz_passes_validators_and_arkit_rules(textured_asset: Asset, tmp_path: Path) -> None:
    pytest.importorskip("pxr")
    from pxr import Usd, UsdGeom

    (path,) = save_asset(textured_asset, tmp_path / "a.usdz")
    assert validation_errors(path) == []
    assert arkit_errors(path) == []
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0 and UsdGeom.GetStageUpAxis(stage) == "Y"
    data = stage.GetRootLayer().customLayerData
    assert data["producer"] == "Step1X-3D for Blender" and data["ai_generated"] is True
    assert data["digitalSourceType"].endswith("/digitalsourcetype/trainedAlgorithmicMedia")
    assert data["seed"] == 7 and json.loads(data["settings"]) == {"lods": [1.0, 0.5], "texture_size": 512}
    assert json.loads(data["provenance"])["images"] == ["front.png"]

    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/Asset/Mesh"))
    m = textured_asset.mesh
    np.testing.assert_allclose(np.array(mesh.GetPointsAttr().Get()), m.positions, atol=1e-7)
    np.testing.assert_array_equal(np.array(mesh.GetFaceVertexIndicesAttr().Get()), m.faces.reshape(-1))
    st = np.array(UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st").Get())
    np.testing.assert_allclose(st[:, 1], 1.0 - m.uvs[:, 1], atol=1e-7)  # USD's v grows upwards
    assert len(mesh.GetNormalsAttr().Get()) == m.vertex_count and mesh.GetNormalsInterpolation() == "vertex"

    # Occlusion, roughness and metallic are the R, G, B channels of our ORM map.
    assert _source(stage, "diffuseColor") == ("./tex_basecolor.png", "rgb")
    assert [_source(stage, n) for n in ("occlusion", "roughness", "metallic")] == [
        ("./tex_orm.png", "r"), ("./tex_orm.png", "g"), ("./tex_orm.png", "b")]
    assert _source(stage, "normal") == ("./tex_normal.png", "rgb")
    normal = "/Asset/Materials/Material/NormalTexture"
    assert _shader_input(stage, normal, "sourceColorSpace").Get() == "raw"
    assert tuple(_shader_input(stage, normal, "scale").Get()) == (2.0, 2.0, 2.0, 1.0)
    assert tuple(_shader_input(stage, normal, "bias").Get()) == (-1.0, -1.0, -1.0, 0.0)
    with zipfile.ZipFile(path) as z:
        orm = np.asarray(Image.open(io.BytesIO(z.read("tex_orm.png"))))
    assert textured_asset.material is not None
    np.testing.assert_array_equal(orm, textured_asset.material.orm)


def test_usda_with_maps_beside_and_the_checks_can_fail(textured_asset: Asset, tmp_path: Path) -> None:
    pytest.importorskip("pxr")
    from pxr import Sdf, Usd, UsdShade

    paths = save_asset(textured_asset, tmp_path / "a.usda")
    assert sorted(p.name for p in paths) == ["a.usda", "a_basecolor.png", "a_normal.png", "a_orm.png"]
    assert (tmp_path / "a.usda").read_text().startswith("#usda 1.0")
    assert validation_errors(tmp_path / "a.usda") == [] and arkit_errors(tmp_path / "a.usda") == []
    # The same checks find real faults: an sRGB normal map, no metersPerUnit, a foreign shader.
    broken = tmp_path / "broken" / "a.usda"
    shutil.copytree(tmp_path, broken.parent, ignore=shutil.ignore_patterns("broken"))
    stage = Usd.Stage.Open(str(broken))
    _shader_input(stage, "/Asset/Materials/Material/NormalTexture", "sourceColorSpace").Set("sRGB")
    stage.GetRootLayer().pseudoRoot.ClearInfo("metersPerUnit")
    UsdShade.Shader.Define(stage, "/Asset/Materials/Material/Fancy").CreateIdAttr("ND_standard_surface_surfaceshader")
    stage.GetRootLayer().Save()
    errors = " ".join(validation_errors(broken))
    assert "InvalidSourceColorSpace" in errors and "MissingMetersPerUnitMetadata" in errors
    assert any("ND_standard_surface_surfaceshader" in e for e in arkit_errors(broken))
    assert Sdf.Layer.FindOrOpen(str(tmp_path / "a.usda")).customLayerData["seed"] == 7


def test_usdc_binary(textured_asset: Asset, tmp_path: Path) -> None:
    pytest.importorskip("pxr")
    for suffix in (".usdc", ".usd"):
        path = save_asset(textured_asset, tmp_path / f"a{suffix}")[0]
        assert path.read_bytes()[:8] == b"PXR-USDC"  # the crate format
        assert validation_errors(path) == []


# --- 3MF ---------------------------------------------------------------------------

NS = {"m": "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"}


def test_3mf_millimetres_z_up_welded(textured_asset: Asset, tmp_path: Path) -> None:
    (path,) = save_asset(textured_asset, tmp_path / "a.3mf")
    with zipfile.ZipFile(path) as z:
        assert {"[Content_Types].xml", "_rels/.rels", "3D/3dmodel.model"} <= set(z.namelist())
        assert "3D/3dmodel.model" in z.read("_rels/.rels").decode()
        root = ET.fromstring(z.read("3D/3dmodel.model"))
    assert root.get("unit") == "millimeter"
    meta = {m.get("name"): m.text for m in root.findall("m:metadata", NS)}
    assert meta["Application"].startswith("Step1X-3D for Blender") and "AI-generated" in meta["Description"]
    assert json.loads(meta["s1x:provenance"])["seed"] == 7
    vertices = np.array([[float(v.get(k)) for k in "xyz"] for v in root.iter(f"{{{NS['m']}}}vertex")])
    triangles = np.array([[int(t.get(k)) for k in ("v1", "v2", "v3")] for t in root.iter(f"{{{NS['m']}}}triangle")])
    positions, faces = weld(textured_asset.mesh.positions, textured_asset.mesh.faces)
    assert len(vertices) == len(positions) < textured_asset.mesh.vertex_count  # seams welded
    expected = np.column_stack([positions[:, 0], -positions[:, 2], positions[:, 1]]) * 1000.0
    np.testing.assert_allclose(vertices, expected, atol=1e-4)
    np.testing.assert_array_equal(triangles, faces)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    assert (np.unique(edges, axis=0, return_counts=True)[1] == 2).all()  # manifold, as 3MF requires


def test_usd_without_uvs_uses_the_factors_and_writes_no_maps(textured_asset: Asset, tmp_path: Path) -> None:
    pytest.importorskip("pxr")
    from dataclasses import replace

    from pxr import Usd

    assert textured_asset.material is not None
    material = replace(textured_asset.material, roughness_factor=0.25, metallic_factor=0.75)
    bare = Asset(mesh=replace(textured_asset.mesh, uvs=None), material=material, provenance=dict(PROVENANCE))
    assert save_asset(bare, tmp_path / "bare.usda") == [tmp_path / "bare.usda"]  # no PNGs nobody reads
    assert validation_errors(tmp_path / "bare.usda") == [] and arkit_errors(tmp_path / "bare.usda") == []
    stage = Usd.Stage.Open(str(tmp_path / "bare.usda"))
    surface = "/Asset/Materials/Material/PreviewSurface"
    assert _shader_input(stage, surface, "roughness").Get() == 0.25
    assert _shader_input(stage, surface, "metallic").Get() == 0.75

"""An LOD chain in USD: a variant set ``LOD`` on /Asset (LOD0..n, LOD0 selected), each variant one Mesh at
/Asset/Mesh; re-read with usd-core, checked by its validators (and the ARKit rules for USDZ)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_server.assets import Asset
from inference_server.export import build_lods, save_asset
from usd_rules import arkit_errors, validation_errors

pytest.importorskip("pxr")

FRACTIONS = (0.5, 0.25)


@pytest.fixture(scope="module")
def lod_asset(textured_asset: Asset) -> Asset:
    lods = build_lods(textured_asset.mesh, FRACTIONS)
    return Asset(mesh=textured_asset.mesh, material=textured_asset.material, lods=lods,
                 provenance=dict(textured_asset.provenance))


def _levels(path: Path) -> dict[str, tuple[int, int, str]]:
    """Variant -> (faces, points, bound material) of /Asset/Mesh with that variant selected."""
    from pxr import Usd, UsdGeom, UsdShade

    stage = Usd.Stage.Open(str(path))
    vset = stage.GetDefaultPrim().GetVariantSets().GetVariantSet("LOD")
    out = {}
    for name in vset.GetVariantNames():
        vset.SetVariantSelection(name)
        mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/Asset/Mesh"))
        material = UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()[0]
        out[name] = (len(mesh.GetFaceVertexCountsAttr().Get()), len(mesh.GetPointsAttr().Get()),
                     str(material.GetPath()))
    return out


@pytest.mark.parametrize("suffix", [".usda", ".usdc", ".usdz"])
def test_lod_variants_decrease_per_fraction_and_pass_the_validators(lod_asset: Asset, tmp_path: Path,
                                                                    suffix: str) -> None:
    from pxr import Usd, UsdGeom

    path = save_asset(lod_asset, tmp_path / f"a{suffix}")[0]
    assert validation_errors(path) == []
    assert arkit_errors(path) == []
    stage = Usd.Stage.Open(str(path))
    root = stage.GetDefaultPrim()
    assert root.GetPath() == "/Asset" and root.GetVariantSets().GetNames() == ["LOD"]
    vset = root.GetVariantSets().GetVariantSet("LOD")
    assert vset.GetVariantSelection() == "LOD0"  # what a reader shows without choosing
    # The composed default is the full mesh, exactly as written.
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/Asset/Mesh"))
    np.testing.assert_allclose(np.array(mesh.GetPointsAttr().Get()), lod_asset.mesh.positions, atol=1e-7)
    assert sorted(p.GetName() for p in root.GetChildren()) == ["Materials", "Mesh"]

    levels = _levels(path)
    assert list(levels) == ["LOD0", "LOD1", "LOD2"]
    full = lod_asset.mesh.face_count
    faces = [levels[f"LOD{i}"][0] for i in range(3)]
    assert faces[0] == full
    assert faces[1] == pytest.approx(full * FRACTIONS[0], rel=0.02)
    assert faces[2] == pytest.approx(full * FRACTIONS[1], rel=0.02)
    assert faces[0] > faces[1] > faces[2]
    assert [levels[f"LOD{i}"][1] for i in range(1, 3)] == [lod.vertex_count for lod in lod_asset.lods]
    assert {material for _, _, material in levels.values()} == {"/Asset/Materials/Material"}  # one shared atlas


def test_variant_meshes_are_the_lod_chain_with_their_own_uvs(lod_asset: Asset, tmp_path: Path) -> None:
    from pxr import Usd, UsdGeom

    (path, *_maps) = save_asset(lod_asset, tmp_path / "a.usda")
    stage = Usd.Stage.Open(str(path))
    vset = stage.GetDefaultPrim().GetVariantSets().GetVariantSet("LOD")
    vset.SetVariantSelection("LOD2")
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/Asset/Mesh"))
    lod = lod_asset.lods[1]
    assert lod.uvs is not None
    np.testing.assert_allclose(np.array(mesh.GetPointsAttr().Get()), lod.positions, atol=1e-7)
    st = np.array(UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st").Get())
    np.testing.assert_allclose(st[:, 1], 1.0 - lod.uvs[:, 1], atol=1e-7)
    extent = np.array(mesh.GetExtentAttr().Get())
    np.testing.assert_allclose(extent, [lod.positions.min(0), lod.positions.max(0)], atol=1e-7)


def test_without_lods_no_variant_set(textured_asset: Asset, tmp_path: Path) -> None:
    from pxr import Usd

    (path, *_maps) = save_asset(textured_asset, tmp_path / "a.usda")
    assert not Usd.Stage.Open(str(path)).GetDefaultPrim().GetVariantSets().GetNames()


def test_geometry_only_lods_in_usdz(textured_asset: Asset, tmp_path: Path) -> None:
    """No UVs and no material (a geometry-only job): the variants still hold decreasing meshes."""
    from inference_server.assets import MeshData

    m = textured_asset.mesh
    bare = MeshData(m.positions, m.faces, normals=m.normals)
    asset = Asset(mesh=bare, lods=build_lods(bare, FRACTIONS), provenance=dict(textured_asset.provenance))
    (path,) = save_asset(asset, tmp_path / "g.usdz")
    assert validation_errors(path) == [] and arkit_errors(path) == []
    levels = _levels(path)
    assert [levels[f"LOD{i}"][0] for i in range(3)] == [asset.mesh.face_count, *(lod.face_count for lod in asset.lods)]
    assert {material for _, _, material in levels.values()} == {""}


def test_convert_keeps_the_lod_chain_in_usd(lod_asset: Asset, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from inference_server.cli import main

    (glb,) = save_asset(lod_asset, tmp_path / "r.glb")
    assert main(["convert", str(glb), str(tmp_path / "r.usdz")]) == 0
    assert "LODs are not written" not in capsys.readouterr().err  # USD holds them: no note
    levels = _levels(tmp_path / "r.usdz")
    assert [levels[f"LOD{i}"][0] for i in range(3)] == [lod_asset.mesh.face_count,
                                                        *(lod.face_count for lod in lod_asset.lods)]
    assert main(["convert", str(glb), str(tmp_path / "r.3mf")]) == 0
    note = capsys.readouterr().err
    assert "note: 2 LODs are not written to .3mf; only .glb, .gltf, .usd, .usda, .usdc, .usdz hold them" in note

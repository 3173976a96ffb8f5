"""Stage 8: our GLB writer passes the Khronos validator and loads in trimesh and Blender."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from export_helpers import PROVENANCE, bumpy_sphere, make_material
from gltf_validator import validate_glb
from inference_server.assets import Asset, MeshData
from inference_server.export import asset_to_glb, build_lods, save_asset
from export_roundtrip import blender_import, load_trimesh_scene


def _gltf_json(data: bytes) -> dict:
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and total == len(data)
    length, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON"
    return json.loads(data[20 : 20 + length])


def _assert_valid(data: bytes) -> dict:
    report = validate_glb(data)
    assert report["errors"] == 0, report["messages"]
    assert report["warnings"] == 0, report["messages"]
    return report


def test_full_pbr_glb_is_valid_and_labelled(textured_asset: Asset) -> None:
    data = asset_to_glb(textured_asset)
    _assert_valid(data)
    gltf = _gltf_json(data)
    assert gltf["asset"]["generator"] == "Step1X-3D for Blender 0.1.0 (backend: inflate)"
    for extras in (gltf["asset"]["extras"], gltf["nodes"][0]["extras"]):
        assert extras["ai_generated"] is True and extras["backend"] == "inflate" and extras["seed"] == 7
        assert extras["settings"]["lods"] == [1.0, 0.5]
    assert "KHR_xmp_json_ld" in gltf["extensionsUsed"] and "extensionsRequired" not in gltf
    packet = gltf["extensions"]["KHR_xmp_json_ld"]["packets"][gltf["asset"]["extensions"]["KHR_xmp_json_ld"]["packet"]]
    assert packet["Iptc4xmpExt:DigitalSourceType"].endswith("/trainedAlgorithmicMedia")
    mat = gltf["materials"][0]
    orm = mat["pbrMetallicRoughness"]["metallicRoughnessTexture"]["index"]
    assert mat["occlusionTexture"]["index"] == orm  # one ORM image serves both slots
    assert "normalTexture" in mat and "baseColorTexture" in mat["pbrMetallicRoughness"]
    prim = gltf["meshes"][0]["primitives"][0]
    assert set(prim["attributes"]) == {"POSITION", "NORMAL", "TEXCOORD_0", "TANGENT"}
    assert [im["mimeType"] for im in gltf["images"]] == ["image/png"] * 3


def test_no_tangents_without_normal_map_and_no_material() -> None:
    mesh = bumpy_sphere(2)
    from inference_server.uv import unwrap

    m = unwrap(mesh, texture_size=512)
    data = asset_to_glb(Asset(mesh=m, material=make_material(512, normal_map=False), provenance={"backend": "inflate"}))
    _assert_valid(data)
    assert "TANGENT" not in _gltf_json(data)["meshes"][0]["primitives"][0]["attributes"]
    bare = asset_to_glb(Asset(mesh=MeshData(mesh.positions, mesh.faces), provenance={}))
    _assert_valid(bare)
    assert "(backend: unknown)" in _gltf_json(bare)["asset"]["generator"]


def test_trimesh_roundtrip(textured_asset: Asset) -> None:
    data = asset_to_glb(textured_asset)
    scene = load_trimesh_scene(data)
    (geom,) = scene.geometry.values()
    m = textured_asset.mesh
    assert len(geom.vertices) == m.vertex_count and len(geom.faces) == m.face_count
    np.testing.assert_allclose(geom.vertices, m.positions, atol=1e-6)
    np.testing.assert_array_equal(geom.faces, m.faces)
    # trimesh flips v to its bottom-left convention on load.
    np.testing.assert_allclose(geom.visual.uv[:, 1], 1.0 - m.uvs[:, 1], atol=1e-6)
    image = geom.visual.material.baseColorTexture
    assert image is not None and image.size == (512, 512)


def test_lod_chain_in_one_glb(textured_asset: Asset, tmp_path: Path) -> None:
    lods = build_lods(textured_asset.mesh, [0.5, 0.25])
    asset = Asset(textured_asset.mesh, textured_asset.material, lods=lods, provenance=dict(PROVENANCE))
    data = asset_to_glb(asset)
    report = _assert_valid(data)
    # MSFT_lod is unknown to the validator (an INFO), never an error.
    assert any("MSFT_lod" in msg for msg in report["messages"])
    gltf = _gltf_json(data)
    assert gltf["nodes"][0]["extensions"]["MSFT_lod"]["ids"] == [1, 2]
    assert gltf["scenes"][0]["nodes"] == [0]
    faces = [len(g.faces) for g in load_trimesh_scene(data).geometry.values()]
    assert sorted(faces, reverse=True) == [m.face_count for m in [asset.mesh, *lods]]
    # As separate files: one valid GLB per level, all with the material.
    paths = save_asset(asset, tmp_path / "chain.glb", lods_as_files=True)
    assert [p.name for p in paths] == ["chain.glb", "chain_lod1.glb", "chain_lod2.glb"]
    for p, mesh in zip(paths, [asset.mesh, *lods]):
        blob = p.read_bytes()
        _assert_valid(blob)
        assert _gltf_json(blob)["meshes"][0]["primitives"][0]["material"] == 0
        assert len(load_trimesh_scene(blob).geometry) == 1


@pytest.mark.parametrize("size", [512, 4096])
def test_texture_sizes_are_kept(unwrapped_mesh: MeshData, size: int) -> None:
    data = asset_to_glb(Asset(unwrapped_mesh, make_material(size, normal_map=False), provenance={"backend": "inflate"}))
    _assert_valid(data)
    (geom,) = load_trimesh_scene(data).geometry.values()
    assert geom.visual.material.baseColorTexture.size == (size, size)


def test_blender_import(textured_asset: Asset, tmp_path: Path) -> None:
    lods = build_lods(textured_asset.mesh, [0.5])
    asset = Asset(textured_asset.mesh, textured_asset.material, lods=lods, provenance=dict(PROVENANCE))
    path = tmp_path / "asset.glb"
    save_asset(asset, path)
    summary = blender_import(path)
    assert summary["result"] == ["FINISHED"]
    meshes = {o["name"]: o for o in summary["objects"] if o["type"] == "MESH"}
    main = meshes["step1x3d_asset"]
    assert main["vertices"] == asset.mesh.vertex_count and main["polygons"] == asset.mesh.face_count
    assert main["uv_layers"] and main["materials"] == ["step1x3d_material"]
    assert main["props"]["ai_generated"] == 1 and main["props"]["backend"] == "inflate"
    # Blender has no MSFT_lod: it imports the coarser level as its own object.
    assert meshes["step1x3d_asset_lod1"]["polygons"] == lods[0].face_count
    assert sorted(im["name"] for im in summary["images"]) == ["base_color", "normal", "occlusion_roughness_metallic"]
    assert all(im["packed"] and im["size"] == [512, 512] for im in summary["images"])
    links = summary["materials"][0]["links"]
    assert "ShaderNodeTexImage.Color->ShaderNodeBsdfPrincipled.Base Color" in links
    assert "ShaderNodeSeparateColor.Green->ShaderNodeBsdfPrincipled.Roughness" in links
    assert "ShaderNodeNormalMap.Normal->ShaderNodeBsdfPrincipled.Normal" in links

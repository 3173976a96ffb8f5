"""The Blender layer with the real bpy 4.5 wheel, headless, no server: registration, import, material, inputs."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from blender_addon.protocol.errors import Step1X3DError

from .assets import cube_arrays, cube_textures, png_bytes
from .conftest import ADDON, scene_snapshot


def test_register_and_unregister_twice(bpy: Any, addon: Any) -> None:
    import addon_utils

    from blender_addon.blender import runtime

    for _ in range(2):
        assert hasattr(bpy.types.WindowManager, "step1x3d")
        assert hasattr(bpy.types, "STEP1X3D_PT_main") and bpy.ops.step1x3d.generate.poll() in (True, False)
        addon_utils.disable(ADDON, default_set=True)
        assert not hasattr(bpy.types.WindowManager, "step1x3d")
        assert not hasattr(bpy.types, "STEP1X3D_PT_main")
        assert not bpy.app.timers.is_registered(runtime._timer) and not runtime._jobs
        addon_utils.enable(ADDON, default_set=True)
    assert bpy.context.window_manager.step1x3d.mode == "full"


def _payload(smooth: bool = False, **kw: Any) -> Any:
    from blender_addon.core.payload import ResultPayload

    return ResultPayload(
        mesh={**cube_arrays(), "smooth": smooth},
        textures=cube_textures(),
        material={"roughness_factor": 1.0, "metallic_factor": 1.0},
        provenance={"backend": "test", "seed": 7, "settings": {"steps": 5}, "source_images": ["a.png", "b.png"]},
        **kw,
    )


def test_import_builds_mesh_uvs_and_a_gltf_style_material(bpy: Any, addon: Any) -> None:
    from blender_addon.blender.importer import corner_uvs, import_payload

    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    payload = _payload()
    obj = import_payload(bpy.context.scene, payload, name="chair")

    mesh = obj.data
    assert (len(mesh.vertices), len(mesh.polygons), len(mesh.loops)) == (24, 12, 36)
    assert tuple(obj.location) == pytest.approx((1.0, 2.0, 3.0))
    assert [c.name for c in obj.users_collection] == ["chair"]
    assert obj.users_collection[0].name in bpy.context.scene.collection.children

    # Geometry in Blender's frame, UVs per corner with v flipped.
    co = np.empty(24 * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    src = payload.mesh["positions"]
    assert np.allclose(co.reshape(-1, 3), np.stack([src[:, 0], -src[:, 2], src[:, 1]], axis=1))
    expected_uv = payload.mesh["uvs"][payload.mesh["faces"].ravel()].copy()
    expected_uv[:, 1] = 1.0 - expected_uv[:, 1]
    assert np.allclose(corner_uvs(mesh), expected_uv)
    assert not any(p.use_smooth for p in mesh.polygons)  # flat, as sent

    # Material wired like Blender's glTF importer.
    mat = obj.active_material
    links = {(l.from_node.type, l.from_socket.name, l.to_node.type, l.to_socket.name) for l in mat.node_tree.links}  # noqa: E741
    assert ("TEX_IMAGE", "Color", "BSDF_PRINCIPLED", "Base Color") in links
    assert ("SEPARATE_COLOR", "Green", "BSDF_PRINCIPLED", "Roughness") in links
    assert ("SEPARATE_COLOR", "Blue", "BSDF_PRINCIPLED", "Metallic") in links
    assert ("TEX_IMAGE", "Color", "NORMAL_MAP", "Color") in links
    assert ("NORMAL_MAP", "Normal", "BSDF_PRINCIPLED", "Normal") in links
    assert ("BSDF_PRINCIPLED", "BSDF", "OUTPUT_MATERIAL", "Surface") in links
    tex = {n.image.name: n.image for n in mat.node_tree.nodes if n.type == "TEX_IMAGE"}
    assert set(tex) == {"chair_base_color", "chair_orm", "chair_normal"}
    assert all(img.packed_file is not None and img.source == "FILE" for img in tex.values())
    assert tex["chair_base_color"].colorspace_settings.name == "sRGB"
    assert tex["chair_orm"].colorspace_settings.name == "Non-Color"
    assert tex["chair_normal"].colorspace_settings.name == "Non-Color"
    assert tuple(tex["chair_base_color"].size) == (64, 64)  # decodes from the packed PNG
    assert bytes(tex["chair_orm"].packed_file.data) == payload.textures["orm"]

    # Provenance as custom properties.
    assert obj["step1x3d_ai_generated"] is True and obj["step1x3d_seed"] == 7
    assert obj["step1x3d_source_images"] == '["a.png", "b.png"]'


def test_smooth_meshes_get_the_servers_normals(bpy: Any, addon: Any) -> None:
    from blender_addon.blender.importer import import_payload

    obj = import_payload(bpy.context.scene, _payload(smooth=True), name="smooth")
    assert all(p.use_smooth for p in obj.data.polygons)
    assert obj.data.has_custom_normals
    normals = np.empty(36 * 3, dtype=np.float32)
    obj.data.corner_normals.foreach_get("vector", normals)
    face_normals = np.empty(12 * 3, dtype=np.float32)
    obj.data.polygons.foreach_get("normal", face_normals)
    # Split per face on a cube: every corner normal equals its face normal.
    assert np.allclose(normals.reshape(12, 3, 3), face_normals.reshape(12, 1, 3), atol=1e-3)


def test_lods_come_as_hidden_children_sharing_the_material(bpy: Any, addon: Any) -> None:
    from blender_addon.blender.importer import import_payload

    obj = import_payload(bpy.context.scene, _payload(lods=[{**cube_arrays(0.25), "smooth": False}]), name="prop")
    lod = bpy.data.objects["prop_LOD1"]
    assert lod.parent == obj and lod.hide_viewport and lod.hide_render
    assert lod.active_material == obj.active_material
    assert lod.users_collection[0] == obj.users_collection[0]


def test_a_failed_import_leaves_nothing_behind(bpy: Any, addon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from blender_addon.blender import importer, material

    before = scene_snapshot(bpy)
    bad = _payload()
    bad.mesh["faces"] = bad.mesh["faces"].copy()
    bad.mesh["faces"][0, 0] = 999
    with pytest.raises(Step1X3DError, match="do not exist") as refused:
        importer.import_payload(bpy.context.scene, bad, name="broken")
    assert refused.value.code == "bad_mesh"
    assert scene_snapshot(bpy) == before

    # A failure half-way (after the mesh and two images exist) is rolled back too.
    real = material.packed_image
    calls = {"n": 0}

    def flaky(name: str, png: bytes, *, non_color: bool) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("decoder exploded")
        return real(name, png, non_color=non_color)

    monkeypatch.setattr(material, "packed_image", flaky)
    with pytest.raises(Step1X3DError, match="Blender could not build the asset") as refused:
        importer.import_payload(bpy.context.scene, _payload(), name="broken")
    assert refused.value.code == "import_failed"
    assert scene_snapshot(bpy) == before


def test_the_import_operators_are_single_undo_steps(bpy: Any, addon: Any) -> None:
    # bpy as a module has no window, so ed.undo cannot run (its poll fails): we check what makes one undo
    # step instead -- the operators that create datablocks carry UNDO, and the timer path imports only
    # inside step1x3d.import_result (test_server_flows checks that nothing exists before that call).
    for op in ("import_result", "generate", "retexture", "reimport"):
        assert "UNDO" in getattr(bpy.types, f"STEP1X3D_OT_{op}").bl_options
    assert not bpy.ops.ed.undo.poll()


def test_reference_images_from_files_and_from_the_blend(bpy: Any, addon: Any, tmp_path: Any) -> None:
    from blender_addon.blender.references import InputError, gather

    path = tmp_path / "front.png"
    data = png_bytes(np.full((8, 6, 3), 200, dtype=np.uint8))
    path.write_bytes(data)
    packed = bpy.data.images.new("packed", 4, 4)
    packed.pack(data=data, data_len=len(data))
    packed.source = "FILE"
    generated = bpy.data.images.new("painted", 5, 3, alpha=True)
    generated.pixels.foreach_set(np.tile([1.0, 0.0, 0.0, 1.0], 15).astype(np.float32))

    refs = gather([str(path), packed, "painted"])
    assert refs.names == ["front.png", "packed.png", "painted.png"]
    assert refs.images[0] == data and refs.images[1] == data
    img = np.asarray(Image.open(io.BytesIO(refs.images[2])))
    assert img.shape == (3, 5, 4) and img[0, 0].tolist() == [255, 0, 0, 255]

    with pytest.raises(InputError, match="neither a file nor an image"):
        gather([str(tmp_path / "missing.png")])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="not a PNG, JPEG or WebP"):
        gather([str(tmp_path / "notes.txt")])
    with pytest.raises(InputError, match="at least one reference image"):
        gather([])


def test_retexture_sends_the_evaluated_triangulated_mesh(bpy: Any, addon: Any) -> None:
    from blender_addon.blender import retexture

    bpy.ops.mesh.primitive_cube_add(size=2.0)
    obj = bpy.context.active_object
    sub = obj.modifiers.new("sub", "SUBSURF")
    sub.levels, sub.subdivision_type = 1, "SIMPLE"  # keeps the corners where they are
    mesh = retexture.extract_mesh(bpy.context, obj)
    assert mesh["faces"].shape == (24 * 2, 3)  # 24 subdivided quads, triangulated
    assert mesh["uvs"].shape == (mesh["positions"].shape[0], 2)
    # Local frame, glTF axes: the cube's top (+Z in Blender) is +Y on the wire.
    assert mesh["positions"][:, 1].max() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(retexture.InputError, match="not a mesh"):
        bpy.ops.object.camera_add()
        retexture.check_target(bpy.context.active_object)


def test_a_mesh_without_uvs_gets_a_smart_uv_project_before_sending(bpy: Any, addon: Any) -> None:
    from blender_addon.blender import retexture

    bpy.ops.mesh.primitive_cube_add(size=2.0)
    obj = bpy.context.active_object
    while obj.data.uv_layers:
        obj.data.uv_layers.remove(obj.data.uv_layers[0])
    obj.data.vertices[0].select = False
    selected = [v.select for v in obj.data.vertices]
    assert retexture.ensure_uv_map(bpy.context, obj) == ("UVMap", True)
    assert [v.select for v in obj.data.vertices] == selected  # Smart UV Project's select-all is undone
    assert retexture.ensure_uv_map(bpy.context, obj) == ("UVMap", False)
    assert obj.mode == "OBJECT" and obj.data.uv_layers.active.name == "UVMap"
    mesh = retexture.extract_mesh(bpy.context, obj)
    uvs = mesh["uvs"]
    assert uvs.min() >= 0.0 and uvs.max() <= 1.0 and np.ptp(uvs, axis=0).min() > 0.5  # a real layout


def test_a_reexport_with_blenders_gltf_exporter_keeps_the_occlusion(bpy: Any, addon: Any, tmp_path: Any) -> None:
    """Saved with packed maps, reopened and exported by Blender's glTF exporter: the AO survives."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from blender_addon.blender.importer import import_payload

    from .assets import solid_rgb

    payload = _payload()
    yy = np.arange(64, dtype=np.uint8)[:, None].repeat(64, axis=1)
    orm = np.stack([40 + yy * 2, np.full_like(yy, 140), np.full_like(yy, 20)], axis=-1)  # AO varies by row
    payload.textures = {**payload.textures, "orm": png_bytes(orm), "base_color": png_bytes(solid_rgb(64, (9, 99, 199)))}
    obj = import_payload(bpy.context.scene, payload, name="crate")
    groups = [n for n in obj.active_material.node_tree.nodes if n.type == "GROUP"]
    assert [g.node_tree.name for g in groups] == ["glTF Material Output"]
    assert groups[0].inputs["Occlusion"].links[0].from_socket.name == "Red"
    # A second material reuses the one settings group (as the glTF importer does).
    second = import_payload(bpy.context.scene, _payload(), name="crate2")
    assert [n.node_tree for n in second.active_material.node_tree.nodes if n.type == "GROUP"] == [groups[0].node_tree]

    blend, out = tmp_path / "scene.blend", tmp_path / "crate.gltf"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)  # packed maps travel inside the .blend
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("gltf_reexport.py")), str(blend), "crate",
                           str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "EXPORTED" in proc.stdout and out.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    gltf = json.loads(out.read_text())
    (mat,) = gltf["materials"]
    assert "occlusionTexture" in mat, mat
    image = gltf["images"][gltf["textures"][mat["occlusionTexture"]["index"]]["source"]]
    ao = np.asarray(Image.open(tmp_path / image["uri"]).convert("RGB"))
    assert np.array_equal(ao[:, :, 0], orm[:, :, 0])  # the occlusion channel is ours, row by row
    assert "metallicRoughnessTexture" in mat["pbrMetallicRoughness"]


def test_materials_use_no_api_that_newer_blenders_deprecate(bpy: Any, addon: Any) -> None:
    """Blender 5.0 warns that Material.use_nodes goes away in 6.0: building our material must not touch it."""
    import warnings

    from blender_addon.blender.importer import import_payload

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = import_payload(bpy.context.scene, _payload(), name="modern")
    ours = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if "blender_addon" in w.filename]
    assert ours == []
    assert obj.active_material.node_tree is not None
    assert any(n.type == "BSDF_PRINCIPLED" for n in obj.active_material.node_tree.nodes)

"""USD (.usd/.usda/.usdc) and USDZ through usd-core (``pxr``), the reference implementation.

Layout: ``/Asset`` (Xform, kind component, the default prim) holds ``Mesh`` and
``Materials/Material``. The mesh has vertex normals and ``st`` UVs (USD's v grows
upwards: st = (u, 1 - v)); the material is a UsdPreviewSurface fed by UsdUVTexture
shaders: base colour (sRGB), our ORM map read three times for occlusion (r), roughness
(g) and metallic (b), and the normal map (raw, scale 2 bias -1, OpenGL +Y like ours).
glTF factors become the texture scale/bias, so the look is the same without maps
baked again. Stage: metersPerUnit 1, upAxis Y (the glTF frame, no conversion).
Provenance and the AI-generated label (IPTC digital source type
``trainedAlgorithmicMedia``) live in the root layer's ``customLayerData``.
An LOD chain becomes a variant set ``LOD`` on ``/Asset`` (variants ``LOD0`` .. ``LODn``,
``LOD0`` selected), each variant defining ``/Asset/Mesh`` at its level: the usual
USD pipeline layout for switchable levels (one composed mesh at a time, the same
path and material whichever is selected). Without LODs there is no variant set.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from blender_addon.protocol.errors import Step1X3DError
from blender_addon.protocol.provenance import AI_GENERATED, BACKEND, SEED, SETTINGS, labelled

from .. import __version__
from ..assets import Asset, MeshData, PBRMaterial
from .glb import IPTC_AI_SOURCE, PROJECT, generator_string, json_safe, png_bytes
from .meshprep import prepare_mesh

MESH_PATH = "/Asset/Mesh"
LOD_VARIANT_SET = "LOD"


def lod_variant(level: int) -> str:
    """The variant name of LOD ``level`` (0: the full mesh)."""
    return f"LOD{level}"


def _pxr() -> Any:
    try:
        import pxr  # noqa: F401
    except ImportError:
        raise Step1X3DError("writing USD needs usd-core: pip install 'step1x3d-blender[export]'", "not_installed") from None
    return pxr


def layer_metadata(asset: Asset) -> dict[str, Any]:
    """What goes into customLayerData: who made it, that a trained model did, and how."""
    prov = json_safe(labelled(asset.provenance))
    data: dict[str, Any] = {
        "producer": PROJECT,
        "producerVersion": __version__,
        "generator": generator_string(prov),
        AI_GENERATED: True,
        "digitalSourceType": IPTC_AI_SOURCE,
        "backend": str(prov.get(BACKEND, "unknown")),
        "provenance": json.dumps(prov, sort_keys=True),  # the whole record, losslessly
    }
    if SEED in prov:
        data["seed"] = int(prov[SEED])
    if SETTINGS in prov:
        data["settings"] = json.dumps(prov[SETTINGS], sort_keys=True)
    return data


def _texture_files(asset: Asset, stem: str) -> dict[str, tuple[str, bytes]]:
    """Slot -> (file name, PNG bytes) for the maps the material has (none without UVs to read them)."""
    files: dict[str, tuple[str, bytes]] = {}
    material = asset.material
    if material is None or asset.mesh.uvs is None:
        return files
    if material.base_color is not None:
        files["base_color"] = (f"{stem}_basecolor.png", png_bytes(material.base_color))
    if material.orm is not None:
        files["orm"] = (f"{stem}_orm.png", png_bytes(material.orm))
    if material.normal is not None:
        files["normal"] = (f"{stem}_normal.png", png_bytes(material.normal))
    return files


def _build_stage(asset: Asset, layer_path: str, textures: dict[str, str]) -> Any:
    """A stage for ``asset`` saved at ``layer_path``; ``textures`` maps slots to relative file paths."""
    _pxr()
    from pxr import Gf, Kind, Sdf, Usd, UsdGeom, UsdShade, Vt

    stage = Usd.Stage.CreateNew(layer_path)
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    layer = stage.GetRootLayer()
    layer.customLayerData = layer_metadata(asset)
    layer.documentation = "AI-generated 3D asset; " + generator_string(json_safe(asset.provenance))

    root = UsdGeom.Xform.Define(stage, "/Asset")
    stage.SetDefaultPrim(root.GetPrim())
    Usd.ModelAPI(root.GetPrim()).SetKind(Kind.Tokens.component)

    material = None
    if asset.material is not None:
        has_uvs = asset.mesh.uvs is not None
        material = _material(stage, asset.material, textures, has_uvs)
    if not asset.lods:
        _define_mesh(stage, asset.mesh, material)
        return stage
    variants = root.GetPrim().GetVariantSets().AddVariantSet(LOD_VARIANT_SET)
    for level, mesh_data in enumerate([asset.mesh, *asset.lods]):
        name = lod_variant(level)
        variants.AddVariant(name)
        variants.SetVariantSelection(name)
        with variants.GetVariantEditContext():
            _define_mesh(stage, mesh_data, material)
    variants.SetVariantSelection(lod_variant(0))
    return stage


def _define_mesh(stage: Any, data: MeshData, material: Any) -> None:
    """``/Asset/Mesh`` from ``data`` (in the current edit target: the root layer or an LOD variant)."""
    from pxr import Gf, Sdf, UsdGeom, UsdShade, Vt

    m = prepare_mesh(data)
    mesh = UsdGeom.Mesh.Define(stage, MESH_PATH)
    positions = np.ascontiguousarray(m.positions, dtype=np.float32)
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(positions))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(m.face_count, 3, dtype=np.int32)))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(m.faces.reshape(-1).astype(np.int32)))
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    mesh.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]))
    mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)  # a render mesh, not a subdivision cage
    mesh.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)  # counter-clockwise front faces, as glTF
    mesh.CreateDoubleSidedAttr(False)
    if m.normals is not None:
        mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(m.normals, dtype=np.float32)))
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    if m.uvs is not None:
        st = np.column_stack([m.uvs[:, 0], 1.0 - m.uvs[:, 1]]).astype(np.float32)
        primvar = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray,
                                                          UsdGeom.Tokens.vertex)
        primvar.Set(Vt.Vec2fArray.FromNumpy(st))
    if material is not None:
        UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)


def _material(stage: Any, pbr: PBRMaterial, textures: dict[str, str], has_uvs: bool) -> Any:
    from pxr import Gf, Sdf, UsdGeom, UsdShade

    UsdGeom.Scope.Define(stage, "/Asset/Materials")
    material = UsdShade.Material.Define(stage, "/Asset/Materials/Material")
    surface = UsdShade.Shader.Define(stage, "/Asset/Materials/Material/PreviewSurface")
    surface.CreateIdAttr("UsdPreviewSurface")
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    inp = surface.CreateInput
    f = Sdf.ValueTypeNames
    r, g, b, a = (float(c) for c in pbr.base_color_factor)
    inp("useSpecularWorkflow", f.Int).Set(0)
    if not has_uvs:
        textures = {}

    reader: Any = None
    if textures:
        reader = UsdShade.Shader.Define(stage, "/Asset/Materials/Material/TexCoordReader")
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        reader.CreateInput("varname", f.String).Set("st")
        reader.CreateOutput("result", f.Float2)

    def texture(name: str, slot: str, colour_space: str, scale: tuple[float, ...], bias: tuple[float, ...]) -> Any:
        tex = UsdShade.Shader.Define(stage, f"/Asset/Materials/Material/{name}")
        tex.CreateIdAttr("UsdUVTexture")
        tex.CreateInput("file", f.Asset).Set(Sdf.AssetPath(textures[slot]))
        tex.CreateInput("st", f.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
        tex.CreateInput("wrapS", f.Token).Set("clamp")  # an atlas does not tile
        tex.CreateInput("wrapT", f.Token).Set("clamp")
        tex.CreateInput("sourceColorSpace", f.Token).Set(colour_space)
        tex.CreateInput("scale", f.Float4).Set(Gf.Vec4f(*scale))
        tex.CreateInput("bias", f.Float4).Set(Gf.Vec4f(*bias))
        return tex

    if "base_color" in textures:
        tex = texture("BaseColorTexture", "base_color", "sRGB", (r, g, b, a), (0.0, 0.0, 0.0, 0.0))
        tex.CreateOutput("rgb", f.Float3)
        inp("diffuseColor", f.Color3f).ConnectToSource(tex.ConnectableAPI(), "rgb")
        if pbr.base_color is not None and pbr.base_color.ndim == 3 and pbr.base_color.shape[2] == 4 \
                and bool((pbr.base_color[..., 3] < 255).any()):
            tex.CreateOutput("a", f.Float)
            inp("opacity", f.Float).ConnectToSource(tex.ConnectableAPI(), "a")
        else:
            inp("opacity", f.Float).Set(a)
    else:
        inp("diffuseColor", f.Color3f).Set(Gf.Vec3f(r, g, b))
        inp("opacity", f.Float).Set(a)
    if "orm" in textures:
        # glTF multiplies roughness/metallic by their factors; occlusion blends towards 1 by its strength.
        s, rough, metal = float(pbr.occlusion_strength), float(pbr.roughness_factor), float(pbr.metallic_factor)
        tex = texture("ORMTexture", "orm", "raw", (s, rough, metal, 1.0), (1.0 - s, 0.0, 0.0, 0.0))
        for channel, name in (("r", "occlusion"), ("g", "roughness"), ("b", "metallic")):
            tex.CreateOutput(channel, f.Float)
            inp(name, f.Float).ConnectToSource(tex.ConnectableAPI(), channel)
    else:
        inp("roughness", f.Float).Set(float(pbr.roughness_factor))
        inp("metallic", f.Float).Set(float(pbr.metallic_factor))
    if "normal" in textures:
        k = float(pbr.normal_scale)
        tex = texture("NormalTexture", "normal", "raw", (2.0 * k, 2.0 * k, 2.0, 1.0), (-k, -k, -1.0, 0.0))
        tex.CreateOutput("rgb", f.Float3)
        inp("normal", f.Normal3f).ConnectToSource(tex.ConnectableAPI(), "rgb")
    return material


def write_usd(asset: Asset, path: Path) -> list[Path]:
    """Write ``path`` (.usd binary, .usda text, .usdc binary) and its PNG maps beside it; return the files."""
    path = Path(path)
    suffix = path.suffix.lower()
    files = _texture_files(asset, path.stem)
    written: list[Path] = []
    from .files import write_atomic  # lazy: files imports this module's caller

    for name, data in files.values():
        written.append(write_atomic(path.with_name(name), data))
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{suffix}")
    try:
        stage = _build_stage(asset, str(tmp), {slot: f"./{name}" for slot, (name, _) in files.items()})
        stage.GetRootLayer().Save()
        del stage  # release the layer before the file moves
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return [path, *written]


def write_usdz(asset: Asset, path: Path) -> list[Path]:
    """Write a USDZ package (root layer .usdc + PNG maps, stored uncompressed, 64-byte aligned)."""
    _pxr()
    from pxr import Sdf, UsdUtils

    path = Path(path)
    work = Path(tempfile.mkdtemp(prefix="step1x3d-usdz-"))
    try:
        files = _texture_files(asset, "tex")
        for name, data in files.values():
            (work / name).write_bytes(data)
        layer_path = work / f"{path.stem or 'asset'}.usdc"
        stage = _build_stage(asset, str(layer_path), {slot: f"./{name}" for slot, (name, _) in files.items()})
        stage.GetRootLayer().Save()
        del stage
        tmp = work / "package.usdz"
        if not UsdUtils.CreateNewUsdzPackage(Sdf.AssetPath(str(layer_path)), str(tmp)):
            raise Step1X3DError(f"usd-core could not package {path.name}", "export_failed")
        shutil.move(str(tmp), str(path.with_name(f".{path.name}.tmp-{os.getpid()}")))
        os.replace(path.with_name(f".{path.name}.tmp-{os.getpid()}"), path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [path]


__all__ = ["LOD_VARIANT_SET", "MESH_PATH", "layer_metadata", "lod_variant", "write_usd", "write_usdz"]

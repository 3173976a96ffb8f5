"""USD checks for the tests: every UsdValidation validator usd-core ships, plus the ARKit rules.

usd-core 26 no longer ships ``pxr.UsdUtils.ComplianceChecker`` (usdchecker's Python rules);
its successor ``UsdValidation`` has the general and USDZ rules but not the ARKit ones,
so those are re-stated here from their documented intent: allowed prim types, shader
ids, layer and file types, an uncompressed package whose root layer is .usdc, and
materials that bind a UsdPreviewSurface.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

ARKIT_PRIM_TYPES = {"", "Scope", "Xform", "Camera", "Shader", "Material", "Mesh", "Sphere", "Cube", "Cylinder",
                    "Cone", "Capsule", "GeomSubset", "Points", "SkelRoot", "Skeleton", "SkelAnimation",
                    "BlendShape", "SpatialAudio"}
ARKIT_SHADER_IDS = {"UsdPreviewSurface", "UsdUVTexture", "UsdTransform2d", "UsdPrimvarReader_float2",
                    "UsdPrimvarReader_float", "UsdPrimvarReader_float3", "UsdPrimvarReader_float4",
                    "UsdPrimvarReader_int", "UsdPrimvarReader_string", "UsdPrimvarReader_normal",
                    "UsdPrimvarReader_point", "UsdPrimvarReader_vector", "UsdPrimvarReader_matrix"}
ARKIT_FILE_TYPES = {"usda", "usdc", "usd", "png", "jpg", "jpeg", "m4a", "mp3", "wav"}


def validation_errors(path: Path) -> list[str]:
    """Every error (not warning) of every registered UsdValidation validator."""
    from pxr import Usd, UsdValidation

    registry = UsdValidation.ValidationRegistry()
    context = UsdValidation.ValidationContext(registry.GetOrLoadAllValidators())
    stage = Usd.Stage.Open(str(path))
    return [f"{e.GetName()}: {e.GetMessage()}" for e in context.Validate(stage)
            if e.GetType() == UsdValidation.ValidationErrorType.Error]


def arkit_errors(path: Path) -> list[str]:
    """The ARKit rules of the former ComplianceChecker(arkit=True)."""
    from pxr import Usd, UsdShade

    errors: list[str] = []
    stage = Usd.Stage.Open(str(path))
    for prim in stage.Traverse():
        if prim.GetTypeName() not in ARKIT_PRIM_TYPES:
            errors.append(f"prim type {prim.GetTypeName()} at {prim.GetPath()} is not allowed by ARKit")
        if prim.IsA(UsdShade.Shader):
            shader_id = UsdShade.Shader(prim).GetShaderId()
            if shader_id not in ARKIT_SHADER_IDS:
                errors.append(f"shader {shader_id} at {prim.GetPath()} is not allowed by ARKit")
        if prim.IsA(UsdShade.Material):
            source = UsdShade.Material(prim).ComputeSurfaceSource()[0]
            if not source or source.GetShaderId() != "UsdPreviewSurface":
                errors.append(f"material {prim.GetPath()} has no UsdPreviewSurface")
    for layer in stage.GetUsedLayers():
        if layer.GetFileFormat().formatId not in ("usda", "usdc", "usd", "usdz"):
            errors.append(f"layer {layer.identifier} is not USD")
    if path.suffix == ".usdz":
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if not infos[0].filename.endswith(".usdc"):
                errors.append(f"the package's root layer {infos[0].filename} is not .usdc")
            for info in infos:
                if info.compress_type != zipfile.ZIP_STORED:
                    errors.append(f"{info.filename} is compressed")
                if info.filename.rsplit(".", 1)[-1].lower() not in ARKIT_FILE_TYPES:
                    errors.append(f"{info.filename} is not a file type ARKit reads")
                if [i.filename for i in infos].count(info.filename) > 1:
                    errors.append(f"{info.filename} is in the package twice")
    return errors

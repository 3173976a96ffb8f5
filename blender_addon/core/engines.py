"""Game-engine presets for FBX export: axes, units, and how each engine wants its maps packed.

Pure numpy (no bpy): the Blender side (``blender.engine_export``) reads the maps out of the
material and hands them here.

- Unity: metres, Y up (the FBX exporter's "FBX Units Scale": coordinates in metres and
  UnitScaleFactor 100, i.e. 1 unit = 100 cm), transform baked so objects import unrotated.
  The Standard/URP Lit "Metallic" map: metallic in RGB (Unity reads R), smoothness
  (1 - roughness) in alpha; occlusion as its own map (Unity reads G).
- Unreal: centimetres (coordinates x 100, UnitScaleFactor 1), Z up, in Blender's own frame
  (the exporter's "Y forward" is no rotation; the asset's front faces -Y, and Unreal's
  "Convert Scene" turns it into +Y, where its mannequin faces too). One ORM map:
  R occlusion, G roughness, B metallic, as Unreal's packed-mask convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EnginePreset:
    name: str
    label: str
    axis_up: str  # Blender FBX exporter's axis_up
    axis_forward: str  # the exporter's name for where Blender's +Y goes ("Y": no rotation)
    apply_scale_options: str  # FBX_SCALE_UNITS: metres + UnitScaleFactor 100; FBX_SCALE_NONE: centimetres + 1
    bake_space_transform: bool  # bake axis change and unit scale into the mesh (no rotated or scaled root)
    unit: str  # the unit coordinates are written in
    units_per_metre: float
    maps: tuple[str, ...]  # the packed maps written beside the FBX


ENGINES: dict[str, EnginePreset] = {
    "unity": EnginePreset("unity", "Unity", "Y", "-Z", "FBX_SCALE_UNITS", True, "m", 1.0,
                          ("BaseColor", "Normal", "MetallicSmoothness", "Occlusion")),
    "unreal": EnginePreset("unreal", "Unreal", "Z", "Y", "FBX_SCALE_NONE", True, "cm", 100.0,
                           ("BaseColor", "Normal", "ORM")),
}


def preset(engine: str) -> EnginePreset:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    return ENGINES[engine]


def _u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(values, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def metallic_smoothness(metallic: np.ndarray, roughness: np.ndarray) -> np.ndarray:
    """Unity's Metallic map, (H, W, 4) uint8: metallic in R, G, B, smoothness = 1 - roughness in A.

    Inputs are (H, W) floats 0..1 with their material factors already applied.
    """
    metal = _u8(metallic)
    return np.dstack([metal, metal, metal, _u8(1.0 - np.asarray(roughness, np.float32))])


def orm(occlusion: np.ndarray, roughness: np.ndarray, metallic: np.ndarray) -> np.ndarray:
    """Unreal's packed (H, W, 3) uint8 map: R occlusion, G roughness, B metallic (floats 0..1 in)."""
    return np.dstack([_u8(occlusion), _u8(roughness), _u8(metallic)])


def grey(values: np.ndarray) -> np.ndarray:
    """A single channel (H, W) float map as an opaque grey (H, W, 3) uint8 image."""
    v = _u8(values)
    return np.dstack([v, v, v])


__all__ = ["ENGINES", "EnginePreset", "grey", "metallic_smoothness", "orm", "preset"]

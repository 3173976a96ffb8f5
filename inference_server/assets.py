"""What a pipeline produces: a mesh, its PBR maps and where it came from.

Conventions (everything downstream relies on them):
- Frame: glTF. Y up, the front of the object (the reference image's view) faces +Z,
  metres, the object fits in [-1, 1]. The front camera sits on +Z looking towards -Z;
  image x maps to +X and image up to +Y.
- Faces are counter-clockwise seen from outside (glTF front faces).
- UVs follow glTF: origin at the image's top-left, v grows downwards
  (row = v * height). Blender flips v on import.
- Vertices are already split at UV seams: one UV per vertex.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class MeshData:
    positions: np.ndarray  # (N, 3) float32
    faces: np.ndarray  # (M, 3) uint32
    uvs: np.ndarray | None = None  # (N, 2) float32, glTF convention
    normals: np.ndarray | None = None  # (N, 3) float32, unit length
    tangents: np.ndarray | None = None  # (N, 4) float32, xyz + handedness w
    smooth: bool = True  # shade smooth (True) or flat (False)

    @property
    def vertex_count(self) -> int:
        return int(self.positions.shape[0])

    @property
    def face_count(self) -> int:
        return int(self.faces.shape[0])


@dataclass
class PBRMaterial:
    """Texture maps as uint8 images (H, W, C), plus factors for what has no map."""

    base_color: np.ndarray | None = None  # (H, W, 3|4) sRGB
    orm: np.ndarray | None = None  # (H, W, 3) linear: R occlusion, G roughness, B metallic
    normal: np.ndarray | None = None  # (H, W, 3) tangent space, +Y (glTF/OpenGL)
    base_color_factor: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    roughness_factor: float = 1.0
    metallic_factor: float = 0.0
    occlusion_strength: float = 1.0
    normal_scale: float = 1.0


@dataclass
class Asset:
    mesh: MeshData
    material: PBRMaterial | None = None
    lods: list[MeshData] = field(default_factory=list)  # coarser levels after `mesh`, same material
    provenance: dict[str, Any] = field(default_factory=dict)  # backend, seed, settings, "AI-generated"
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    notes: list[str] = field(default_factory=list)  # things the artist should know ("re-unwrapped UVs")

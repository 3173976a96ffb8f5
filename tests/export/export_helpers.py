"""Helpers for the export tests: meshes and materials (imported by name, so no clash with other conftests)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for gltf_validator

from inference_server.assets import MeshData, PBRMaterial  # noqa: E402


def bumpy_sphere(subdivisions: int = 4) -> MeshData:
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = sphere.vertices * (1.0 + 0.05 * np.sin(4 * sphere.vertices[:, :1]) * np.cos(3 * sphere.vertices[:, 1:2]))
    normals = trimesh.Trimesh(v, sphere.faces, process=False).vertex_normals
    return MeshData(v.astype(np.float32), sphere.faces.astype(np.uint32), normals=normals.astype(np.float32))


def make_material(size: int, normal_map: bool = True) -> PBRMaterial:
    rng = np.random.default_rng(size)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([xx * 255, yy * 255, np.full_like(xx, 128)], axis=2).astype(np.uint8)
    orm = np.stack([np.full_like(xx, 230), 140 + 40 * xx, np.zeros_like(xx)], axis=2).astype(np.uint8)
    normal = None
    if normal_map:
        tilt = rng.normal(0, 0.1, (size, size, 2))
        n = np.dstack([tilt, np.ones((size, size))])
        n /= np.linalg.norm(n, axis=2, keepdims=True)
        normal = np.round((n * 0.5 + 0.5) * 255).astype(np.uint8)
    return PBRMaterial(base_color=base, orm=orm, normal=normal, roughness_factor=1.0, metallic_factor=0.0)


PROVENANCE = {"backend": "inflate", "seed": 7, "settings": {"texture_size": 512, "lods": (1.0, 0.5)},
              "images": ["front.png"]}



"""Stage 7: PBR maps on the UV atlas (base colour, ORM, optional normal map).

- Base colour: the projected texture as given (sRGB), size S x S.
- ORM (linear, glTF packing R = occlusion, G = roughness, B = metallic):
  * occlusion is baked from the geometry (``occlusion.py``: depth-map AO over 64
    directions) at min(S, 1024)^2 texels (AO is low-frequency; the map is then
    scaled up to S), with gutters filled from the nearest chart texel;
  * roughness is a heuristic, because a single photo-like reference cannot tell gloss
    apart: 0.6 where the base colour is locally flat, rising to 0.95 where it has
    high-frequency luminance detail (textured surfaces such as fabric, stone or bark
    read as rough; flat painted areas as semi-glossy), measured as the local standard
    deviation of luminance in a 7x7 window (0.15 or more counts as fully textured).
    The reference image also already contains its lighting, so we never go glossier
    than 0.6 to avoid doubled highlights;
  * metallic is 0 everywhere (factor 0, B = 0): colour alone is no evidence of metal
    and a false metallic renders black without an environment map.
- Normal map: only when there is geometric detail the mesh itself cannot show, i.e.
  when a ``detail_mesh`` (e.g. the surface before decimation) is given and the baked
  normals differ from the mesh's interpolated normals by more than
  ``NORMAL_DETAIL_DEG`` at the 95th percentile of texels. Otherwise no normal map and
  no tangents are shipped (a flat normal map costs memory and a texture fetch for
  nothing). We never invent bumps from the colour image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

from inference_server.kernels import rasterize_uv

from ..assets import MeshData, PBRMaterial
from ..pipeline.base import JobContext, PipelineError
from .occlusion import bake_occlusion
from .tangents import compute_tangents

STAGE = "pbr"
AO_MAX_SIZE = 1024
NORMAL_MAX_SIZE = 1024  # the baked detail is a smooth field's: 1024^2 carries it, at a quarter of the time
NORMAL_DETAIL_DEG = 2.0
ROUGHNESS_FLAT = 0.6
ROUGHNESS_TEXTURED = 0.95
ROUGHNESS_STD_FULL = 0.15


@dataclass
class SurfaceSamples:
    """Where each texel of a UV raster lies on the mesh."""

    covered: np.ndarray  # (H, W) bool
    face: np.ndarray  # (K,) face per covered texel
    bary: np.ndarray  # (K, 3)
    points: np.ndarray  # (K, 3)
    normals: np.ndarray  # (K, 3) interpolated, unit


def surface_samples(mesh: MeshData, size: int) -> SurfaceSamples:
    from ..export.meshprep import unit_or, vertex_normals

    if mesh.uvs is None:
        raise ValueError("surface samples need uvs")
    raster = rasterize_uv(mesh.uvs, mesh.faces, size, size)
    face_id, bary = raster.face_id, raster.bary
    covered = face_id >= 0
    face = face_id[covered].astype(np.int64)
    b = bary[covered].astype(np.float64)
    corners = np.asarray(mesh.faces, dtype=np.int64)[face]
    pos = np.asarray(mesh.positions, dtype=np.float64)
    normals = mesh.normals if mesh.normals is not None else vertex_normals(mesh.positions, mesh.faces)
    nrm = np.asarray(normals, dtype=np.float64)
    points = (pos[corners] * b[:, :, None]).sum(1)
    n = unit_or((nrm[corners] * b[:, :, None]).sum(1), np.array([0.0, 1.0, 0.0]))
    return SurfaceSamples(covered, face, b, points, n)


def fill_gutters(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Copy every uncovered texel from its nearest covered one, so mip-maps and bilinear
    filtering at chart borders never pull in unrelated colours."""
    if covered.all() or not covered.any():
        return image
    _, (rows, cols) = ndimage.distance_transform_edt(~covered, return_indices=True)
    return image[rows, cols]


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def roughness_from_colour(base_color: np.ndarray) -> np.ndarray:
    """(S, S) float roughness in [ROUGHNESS_FLAT, ROUGHNESS_TEXTURED]; see the module doc."""
    rgb = base_color[..., :3].astype(np.float32) / 255.0
    lum = rgb @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    mean = ndimage.uniform_filter(lum, 7)
    var = np.maximum(ndimage.uniform_filter(lum * lum, 7) - mean * mean, 0.0)
    t = np.clip(np.sqrt(var) / ROUGHNESS_STD_FULL, 0.0, 1.0)
    return ROUGHNESS_FLAT + (ROUGHNESS_TEXTURED - ROUGHNESS_FLAT) * t


def bake_normal_map(mesh: MeshData, detail_mesh: MeshData, size: int) -> tuple[np.ndarray | None, float]:
    """Tangent-space (+Y) normal map carrying ``detail_mesh``'s normals onto ``mesh``.

    Returns (map or None when there is no detail to carry, 95th-percentile angle in degrees).
    """
    from ..export.meshprep import unit_or, vertex_normals

    samples = surface_samples(mesh, size)
    detail_n = detail_mesh.normals if detail_mesh.normals is not None else vertex_normals(detail_mesh.positions, detail_mesh.faces)
    tree = cKDTree(np.asarray(detail_mesh.positions, dtype=np.float64))
    dist, idx = tree.query(samples.points, k=4)
    w = 1.0 / np.maximum(dist, 1e-9)
    hi = unit_or((np.asarray(detail_n, dtype=np.float64)[idx] * w[:, :, None]).sum(1), np.array([0.0, 1.0, 0.0]))
    cos = np.clip((hi * samples.normals).sum(1), -1.0, 1.0)
    p95 = float(np.degrees(np.percentile(np.arccos(cos), 95))) if cos.size else 0.0
    if p95 < NORMAL_DETAIL_DEG:
        return None, p95
    tangents = compute_tangents(MeshData(mesh.positions, mesh.faces, uvs=mesh.uvs,
                                         normals=mesh.normals if mesh.normals is not None else vertex_normals(mesh.positions, mesh.faces)))
    corners = np.asarray(mesh.faces, dtype=np.int64)[samples.face]
    t4 = tangents[corners].astype(np.float64)
    t = (t4[:, :, :3] * samples.bary[:, :, None]).sum(1)
    n = samples.normals
    t = unit_or(t - n * (t * n).sum(1, keepdims=True), np.array([1.0, 0.0, 0.0]))
    handed = np.where((t4[:, :, 3] * samples.bary).sum(1) < 0, -1.0, 1.0)
    b = np.cross(n, t) * handed[:, None]  # glTF: bitangent = cross(normal, tangent.xyz) * w
    local = np.stack([(hi * t).sum(1), (hi * b).sum(1), (hi * n).sum(1)], axis=1)
    local = unit_or(local, np.array([0.0, 0.0, 1.0]))
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[..., 2] = 255
    image[..., :2] = 128
    image[samples.covered] = np.clip(np.round((local * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8)
    return fill_gutters(image, samples.covered), p95


def build_material(
    mesh: MeshData,
    base_color: np.ndarray,
    *,
    pbr: bool = True,
    ctx: JobContext | None = None,
    detail_mesh: MeshData | None = None,
) -> PBRMaterial:
    """PBR material for ``mesh`` (with uvs) around the projected ``base_color`` texture."""
    if mesh.uvs is None:
        raise PipelineError("the mesh needs a UV atlas before its material can be built", code="bad_mesh")
    base = np.asarray(base_color)
    if base.dtype != np.uint8 or base.ndim != 3 or base.shape[2] not in (3, 4) or base.shape[0] != base.shape[1]:
        raise PipelineError("base colour must be a square (S, S, 3|4) uint8 image", code="bad_image")
    size = int(base.shape[0])
    material = PBRMaterial(base_color=base)
    if not pbr:
        material.roughness_factor = 0.8  # one factor for the whole asset, same reasoning as the map
        return material

    progress = (lambda k, n: ctx.progress(STAGE, k, n + 2, "baking ambient occlusion")) if ctx else None
    ao_size = min(size, AO_MAX_SIZE)
    samples = surface_samples(mesh, ao_size)
    ao = bake_occlusion(mesh.positions, mesh.faces, samples.points, samples.normals, progress=progress)
    ao_img = np.full((ao_size, ao_size), 255, dtype=np.uint8)
    ao_img[samples.covered] = np.clip(np.round(ao * 255), 0, 255).astype(np.uint8)
    ao_img = _resize(fill_gutters(ao_img, samples.covered), size)

    if ctx:
        ctx.progress(STAGE, 64, 66, "roughness and normal map")
    rough = np.clip(np.round(roughness_from_colour(base) * 255), 0, 255).astype(np.uint8)
    material.orm = np.stack([ao_img, rough, np.zeros_like(rough)], axis=2)
    material.roughness_factor = 1.0  # the map holds the values
    material.metallic_factor = 0.0
    if detail_mesh is not None:
        normal, _ = bake_normal_map(mesh, detail_mesh, min(size, NORMAL_MAX_SIZE))
        material.normal = None if normal is None else _resize(normal, size)
    if ctx:
        ctx.progress(STAGE, 66, 66, "PBR maps ready")
    return material


__all__ = ["build_material", "bake_normal_map", "compute_tangents", "fill_gutters", "roughness_from_colour",
           "surface_samples", "SurfaceSamples"]

"""Mesh side of the geometry data preparation: read, normalise, close, sample.

Facts from upstream's data pipeline (Step1X-3D points to Dora's preprocessing):
* normalisation: centre the bounding box at the origin and scale its longest side to 2, so
  the object spans [-1, 1] (the VAE's field is extracted within +-1.05);
* non-watertight meshes are closed by extracting a thin shell around the surface (an
  iso-surface of the unsigned distance at 2/resolution inside [-1.05, 1.05]^3) and keeping
  the largest piece;
* the VAE encoder sees two point sets with normals: uniform surface samples and samples on
  sharp edges (dihedral angle above a threshold), ``n_samples`` of each (32768 upstream).
Our own code; the unsigned distance comes from a k-d tree over dense surface samples and the
shell from the shared marching-cubes extractor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..prepcache import PrepError

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl", ".off")
EXTENT = 1.0  # half the longest side after normalisation (upstream: [-1, 1])
SHELL_BOUNDS = 1.05


@dataclass
class PreparedMesh:
    vertices: np.ndarray  # (V, 3) float64, normalised
    faces: np.ndarray  # (F, 3) int64
    colors: np.ndarray | None  # (V, 3) float32 in [0, 1], when the source had vertex colours
    source_faces: int
    repaired: bool  # True when the shell extraction closed it


def load_mesh(path: Path) -> Any:
    """A single ``trimesh.Trimesh`` (scene parts merged with their transforms), or PrepError."""
    import trimesh

    if path.suffix.lower() not in MESH_SUFFIXES:
        raise PrepError(f"not a mesh file we read ({path.suffix or 'no suffix'}; use {', '.join(MESH_SUFFIXES)})")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=True)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a report line, not a crash
        raise PrepError(f"cannot read it as a mesh ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise PrepError("it holds no triangles (a point cloud or an empty file)")
    if not np.isfinite(mesh.vertices).all():
        raise PrepError("it has vertices that are not finite numbers")
    extent = float(np.ptp(mesh.vertices, axis=0).max())
    if extent <= 0:
        raise PrepError("all its vertices coincide")
    return mesh


def vertex_colors(mesh: Any) -> np.ndarray | None:
    visual = getattr(mesh, "visual", None)
    if visual is None or getattr(visual, "kind", None) != "vertex":
        return None
    colors = np.asarray(visual.vertex_colors, np.float32)[:, :3] / 255.0
    return colors if len(colors) == len(mesh.vertices) else None


def normalise(vertices: np.ndarray, up: str = "y") -> np.ndarray:
    """Bounding-box centre to the origin, longest side to 2; ``up="z"`` turns Z-up files Y-up."""
    v = np.asarray(vertices, np.float64)
    if up == "z":
        v = np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1)  # +Z up -> +Y up, -Y (front) -> +Z
    elif up != "y":
        raise ValueError(f"up must be y or z, not {up!r}")
    lo, hi = v.min(axis=0), v.max(axis=0)
    return (v - (lo + hi) / 2) * (2 * EXTENT / float((hi - lo).max()))


def is_closed(faces: np.ndarray) -> bool:
    """Every edge shared by exactly two faces with opposite orientation (watertight, consistently wound)."""
    f = np.asarray(faces, np.int64)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    _, counts = np.unique(undirected, axis=0, return_counts=True)
    if not (counts == 2).all():
        return False
    _, dcounts = np.unique(directed, axis=0, return_counts=True)
    return bool((dcounts == 1).all())


def close_shell(vertices: np.ndarray, faces: np.ndarray, resolution: int, samples: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """A watertight mesh around an open one: the iso-surface of the unsigned distance at 2/resolution."""
    import trimesh
    from scipy.spatial import cKDTree

    from ...meshing.extract import extract_dense
    from ...meshing.topology import compact, face_components, signed_volume

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    points, _ = trimesh.sample.sample_surface(mesh, samples, seed=seed)
    points = np.concatenate([points, vertices])
    axis = np.linspace(-SHELL_BOUNDS, SHELL_BOUNDS, resolution + 1)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    udf, _ = cKDTree(points).query(grid, workers=1)
    field = (2.0 / resolution - udf).reshape((resolution + 1,) * 3)  # positive inside the shell
    verts, tris = extract_dense(field.astype(np.float32), bounds=SHELL_BOUNDS, level=0.0)
    if len(tris) == 0:
        raise PrepError("it is too thin or small to close into a watertight shape")
    count, labels = face_components(tris, len(verts))
    if count > 1:  # keep the piece with the largest extent (the outer wall), as upstream
        extents = [np.ptp(verts[np.unique(tris[labels == c])], axis=0).max() for c in range(count)]
        tris = tris[labels == int(np.argmax(extents))]
        verts, tris = compact(verts, tris)
    if signed_volume(verts, tris) < 0:
        tris = tris[:, ::-1].copy()
    return np.asarray(verts, np.float64), np.asarray(tris, np.int64)


def prepare_mesh(path: Path, *, up: str = "y", watertight_resolution: int = 256, watertight_samples: int = 200_000,
                 seed: int = 0) -> PreparedMesh:
    mesh = load_mesh(path)
    vertices = normalise(mesh.vertices, up)
    faces = np.asarray(mesh.faces, np.int64)
    colors = vertex_colors(mesh)
    repaired = False
    if not is_closed(faces):
        vertices, faces = close_shell(vertices, faces, watertight_resolution, watertight_samples, seed)
        colors, repaired = None, True
    return PreparedMesh(vertices, faces, colors, len(mesh.faces), repaired)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    n = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.maximum(length, 1e-12)


def sample_uniform(vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 6): area-uniform surface points and their face normals."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    area = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    if not area.sum() > 0:
        raise PrepError("its faces have no area")
    idx = rng.choice(len(faces), size=count, p=area / area.sum())
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    points = w[:, :1] * a[idx] + w[:, 1:2] * b[idx] + w[:, 2:] * c[idx]
    return np.concatenate([points, face_normals(vertices, faces)[idx]], axis=1)


def sharp_edges(vertices: np.ndarray, faces: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """(E, 2) vertex pairs of edges whose two faces meet at more than ``angle_deg``, and (E, 3) edge normals
    (the normalised mean of the two face normals)."""
    f = np.asarray(faces, np.int64)
    normals = face_normals(vertices, f)
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    owner = np.tile(np.arange(len(f)), 3)
    order = np.lexsort((edges[:, 1], edges[:, 0]))
    edges, owner = edges[order], owner[order]
    same = (edges[1:] == edges[:-1]).all(axis=1)
    first = np.nonzero(same)[0]  # edge k shared by owner[k] and owner[k + 1] (manifold edges)
    pairs, fa, fb = edges[first], owner[first], owner[first + 1]
    cos = np.clip((normals[fa] * normals[fb]).sum(axis=1), -1.0, 1.0)
    sharp = cos < np.cos(np.radians(angle_deg))
    mean = normals[fa[sharp]] + normals[fb[sharp]]
    mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    return pairs[sharp], mean


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    from ...meshing.cleanup import vertex_normals as area_weighted

    return np.asarray(area_weighted(vertices, faces), np.float64)


def sample_sharp(vertices: np.ndarray, faces: np.ndarray, count: int, angle_deg: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(count, 6) points on sharp edges: their vertices (vertex normals) plus points along the edges
    (edge normals), length-weighted. Returns the points and the number of sharp edges (0: no sharp
    edge, and the points are uniform surface samples instead, so smooth objects stay usable)."""
    pairs, edge_normals = sharp_edges(vertices, faces, angle_deg)
    if len(pairs) == 0:
        return sample_uniform(vertices, faces, count, rng), 0
    corner_ids = np.unique(pairs)
    corners = np.concatenate([vertices[corner_ids], vertex_normals(vertices, faces)[corner_ids]], axis=1)
    if len(corners) >= count:
        return corners[rng.choice(len(corners), size=count, replace=False)], len(pairs)
    extra = count - len(corners)
    length = np.linalg.norm(vertices[pairs[:, 1]] - vertices[pairs[:, 0]], axis=1)
    idx = rng.choice(len(pairs), size=extra, p=length / length.sum()) if length.sum() > 0 else \
        rng.choice(len(pairs), size=extra)
    t = rng.random(extra)[:, None]
    along = (1 - t) * vertices[pairs[idx, 0]] + t * vertices[pairs[idx, 1]]
    return np.concatenate([corners, np.concatenate([along, edge_normals[idx]], axis=1)]), len(pairs)

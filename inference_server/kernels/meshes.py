"""Small synthetic meshes with glTF UVs, for tests and benchmarks (no file I/O, any size)."""

from __future__ import annotations

import numpy as np


def uv_sphere(
    n_lat: int = 32, n_lon: int = 64, radius: float = 0.5, uv_margin: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latitude-longitude sphere: positions (V, 3) float32, faces (F, 3) int64 CCW from outside,
    uvs (V, 2) float32 (u = longitude from the front +Z towards +X, v = polar angle from +Y / pi,
    squeezed into [uv_margin, 1 - uv_margin]). Vertices are split at the seam; F = 2 n_lat n_lon - 2 n_lon.
    """
    i, j = np.meshgrid(np.arange(n_lat + 1), np.arange(n_lon + 1), indexing="ij")
    theta = np.pi * i / n_lat
    phi = 2 * np.pi * j / n_lon
    pos = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)], -1) * radius
    pos[:, -1] = pos[:, 0]  # seam copies: bit-identical positions (sin(2 pi) is not 0)
    uv = np.stack([j / n_lon, i / n_lat], -1) * (1 - 2 * uv_margin) + uv_margin
    idx = np.arange((n_lat + 1) * (n_lon + 1)).reshape(n_lat + 1, n_lon + 1)
    a, b = idx[:-1, :-1], idx[:-1, 1:]
    c, d = idx[1:, :-1], idx[1:, 1:]
    upper = np.stack([a, c, d], -1)[:-1]  # skip the degenerate triangles at the poles
    lower = np.stack([a, d, b], -1)[1:]
    faces = np.concatenate([upper.reshape(-1, 3), lower.reshape(-1, 3)])
    return pos.reshape(-1, 3).astype(np.float32), faces.astype(np.int64), uv.reshape(-1, 2).astype(np.float32)


def sphere_with_faces(face_count: int, radius: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A :func:`uv_sphere` with at least ``face_count`` faces, barely more (n_lon = 2 n_lat)."""
    n_lat = max(2, int(np.ceil((1.0 + np.sqrt(1.0 + face_count)) / 2.0)))  # 4 n^2 - 4 n >= face_count
    return uv_sphere(n_lat, 2 * n_lat, radius)


def cube(half: float = 0.4, subdiv: int = 1, gutter: float = 0.04) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axis-aligned cube, each side its own UV chart in a 3 x 2 grid with ``gutter`` between charts.

    Returns positions (V, 3) float32, faces (F, 3) int64 CCW from outside, uvs (V, 2) float32.
    Each side is a ``subdiv`` x ``subdiv`` grid of quads.
    """
    sides = [  # (normal, u axis, v axis) with u x v... chosen so that faces wind CCW from outside
        ((0, 0, 1), (1, 0, 0), (0, -1, 0)),
        ((1, 0, 0), (0, 0, -1), (0, -1, 0)),
        ((0, 0, -1), (-1, 0, 0), (0, -1, 0)),
        ((-1, 0, 0), (0, 0, 1), (0, -1, 0)),
        ((0, 1, 0), (1, 0, 0), (0, 0, 1)),
        ((0, -1, 0), (1, 0, 0), (0, 0, -1)),
    ]
    cell_w, cell_h = 1.0 / 3.0, 1.0 / 2.0
    pos_all: list[np.ndarray] = []
    uv_all: list[np.ndarray] = []
    face_all: list[np.ndarray] = []
    t = np.linspace(0.0, 1.0, subdiv + 1)
    gu, gv = np.meshgrid(t, t, indexing="xy")
    for k, side in enumerate(sides):
        nrm, ua, va = (np.asarray(x, float) for x in side)
        p = half * (nrm + (2 * gu[..., None] - 1) * ua + (2 * gv[..., None] - 1) * va)
        col, row = k % 3, k // 3
        uv = np.stack([
            col * cell_w + gutter / 2 + gu * (cell_w - gutter),
            row * cell_h + gutter / 2 + gv * (cell_h - gutter),
        ], -1)
        base = int(sum(x.shape[0] for x in pos_all))
        idx = base + np.arange((subdiv + 1) ** 2).reshape(subdiv + 1, subdiv + 1)
        a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
        quads = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
        pos_all.append(p.reshape(-1, 3))
        uv_all.append(uv.reshape(-1, 2))
        face_all.append(quads)
    faces = np.concatenate(face_all)
    pos = np.concatenate(pos_all).astype(np.float32)
    # Make every face wind CCW seen from outside, whatever the axis choice above.
    tri = pos[faces]
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = (nrm * tri.mean(1)).sum(1) < 0
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return pos, faces.astype(np.int64), np.concatenate(uv_all).astype(np.float32)

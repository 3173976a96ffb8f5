"""Exact drop-in mode of the geometry stage: ``Step1X3DGeometryPipeline.__call__`` extracts the
surface as upstream does (open where it meets the sampling box); the product (``generate``, the
server backend) closes it. A closed-form field first, then the tiny model with a small box."""

from __future__ import annotations

import numpy as np
import torch

from inference_server.meshing.extract import extract_surface

PLANE_Z = 0.4  # between grid points, so no value sits exactly on the level


def half_space(points: np.ndarray) -> np.ndarray:
    return (PLANE_Z - points[:, 2]).astype(np.float32)  # inside (positive) below z = 0.4


def boundary_edges(faces: np.ndarray) -> int:
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int((counts == 1).sum())


def test_half_space_open_plane_vs_closed_box() -> None:
    res = 8
    verts, faces = extract_surface(half_space, bounds=1.0, resolution=res, coarse_resolution=4, close_shell=False)
    # Upstream's extraction: only the plane, spanning the whole box, open at its rim.
    assert np.allclose(verts[:, 2], PLANE_Z, atol=1e-6)
    assert np.allclose(verts[:, :2].min(axis=0), -1.0) and np.allclose(verts[:, :2].max(axis=0), 1.0)
    assert len(faces) == 2 * res * res and len(verts) == (res + 1) ** 2
    assert boundary_edges(faces) == 4 * res
    v = verts[faces]
    normals = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    assert (normals[:, 2] > 0).all()  # counter-clockwise seen from outside (+z, away from the inside)
    # Ours: the same plane, closed by the box's walls and floor one shell inside the bounds.
    cverts, cfaces = extract_surface(half_space, bounds=1.0, resolution=res, coarse_resolution=4)
    assert boundary_edges(cfaces) == 0 and len(cfaces) > len(faces)
    assert cverts[:, 2].min() < -0.7 and np.isclose(cverts[:, 2].max(), PLANE_Z, atol=1e-6)


def test_dropin_call_leaves_the_surface_open_where_the_product_closes_it(base_pipe, reference_rgba) -> None:
    kwargs = dict(num_inference_steps=2, octree_resolution=32, bounds=0.6)  # a box that cuts the shape (it reaches about 0.8)
    upstream = base_pipe(reference_rgba, generator=torch.Generator().manual_seed(0), output_type="np", **kwargs)
    product = base_pipe.generate([reference_rgba], generator=torch.Generator().manual_seed(0), output_type="np",
                                 **kwargs)
    (uv, uf), (pv, pf) = upstream.mesh[0], product.mesh[0]
    assert boundary_edges(uf) > 0 and boundary_edges(pf) == 0
    # Away from the box the two surfaces are the same: every open-mesh vertex lies on the closed one.
    inner = np.abs(uv).max(axis=1) < 0.5
    assert inner.any()
    closed = {tuple(p) for p in np.round(pv, 5)}
    assert all(tuple(p) in closed for p in np.round(uv[inner], 5))
    # The trimesh output of the drop-in keeps upstream's open surface through clean-up too.
    mesh = base_pipe(reference_rgba, generator=torch.Generator().manual_seed(0), **kwargs).mesh[0]
    assert not mesh.is_watertight and len(mesh.faces) > 0

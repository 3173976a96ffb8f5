"""Triton kernels against the numpy reference on small inputs.

Run in a process of its own with ``TRITON_INTERPRET=1`` set before triton is imported (see
``test_triton.py``), or in-process on a CUDA device. Each check returns a dict of figures that
the tests assert on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from inference_server import kernels as K
from inference_server.kernels.meshes import cube, uv_sphere
from inference_server.kernels.raster._setup import SUBPIXEL

DEVICE = "cpu"


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(DEVICE)


def n(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def compare_raster(pos: np.ndarray, faces: np.ndarray, vp: np.ndarray, w: int, h: int) -> dict[str, float]:
    ref = K.rasterize(pos, faces, vp, w, h, backend="reference")
    tri = K.rasterize(t(pos), t(faces), vp, w, h, backend="triton")
    covered = ref.face_id >= 0
    return {
        "face_id_mismatch": int((n(tri.face_id) != ref.face_id).sum()),
        "covered": int(covered.sum()),
        "bary_err": float(np.abs(n(tri.bary) - ref.bary).max()),
        "depth_err": float(np.abs(n(tri.depth)[covered] - ref.depth[covered]).max()) if covered.any() else 0.0,
        "empty_depth_inf": bool(np.isinf(n(tri.depth)[~covered]).all()),
    }


def check_single_triangle() -> dict[str, float]:
    scr = np.round(np.array([[3.3, 2.7], [35.1, 9.4], [12.6, 27.2]]) * SUBPIXEL) / SUBPIXEL
    pos = np.column_stack([scr[:, 0] / 40 * 2 - 1, 1 - scr[:, 1] / 30 * 2, [0.1, 0.3, -0.5]])
    return compare_raster(pos, np.array([[0, 1, 2]]), np.eye(4), 40, 30)


def check_sphere_ortho() -> dict[str, float]:
    pos, faces, _ = uv_sphere(8, 16, 0.45)
    return compare_raster(pos, faces, K.orthographic("right"), 40, 36)


def check_cube_perspective() -> dict[str, float]:
    pos, faces, _ = cube(0.4, subdiv=2)
    return compare_raster(pos, faces, K.perspective((1.0, 0.7, 0.9), 45.0, distance=2.0), 40, 40)


def check_shared_edges() -> dict[str, float]:
    """A flat grid with vertices on pixel centres and edges: every pixel of the rectangle exactly once."""
    w, h, nq = 24, 20, 4
    gx, gy = np.meshgrid(np.linspace(2.5, w - 2.5, nq + 1), np.linspace(2.5, h - 2.5, nq + 1))
    pos = np.column_stack([gx.ravel() / w * 2 - 1, 1 - gy.ravel() / h * 2, np.zeros(gx.size)])
    idx = np.arange((nq + 1) ** 2).reshape(nq + 1, nq + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    count = np.zeros((h, w), int)
    for f in range(len(faces)):
        count += n(K.rasterize(t(pos), t(faces[f : f + 1]), np.eye(4), w, h, backend="triton").face_id) >= 0
    out = compare_raster(pos, faces, np.eye(4), w, h)
    out["max_count"] = int(count.max())
    out["pixels_once"] = int((count == 1).sum())
    ref_cov = K.rasterize(pos, faces, np.eye(4), w, h, backend="reference").face_id >= 0
    out["expected_pixels"] = int(ref_cov.sum())
    return out


def check_degenerate_and_empty() -> dict[str, float]:
    pos = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.0, 0.5, 0], [3, 3, 0], [4, 3, 0], [3, 4, 0], [np.nan, 0, 0]])
    faces = np.array([[0, 0, 1], [3, 4, 5], [6, 0, 1], [0, 1, 2]])
    out = compare_raster(pos, faces, np.eye(4), 16, 16)
    empty = K.rasterize(t(pos), t(np.zeros((0, 3), np.int64)), np.eye(4), 8, 6, backend="triton")
    out["empty_ok"] = bool((n(empty.face_id) == -1).all() and n(empty.face_id).shape == (6, 8))
    return out


def check_chunked() -> dict[str, float]:
    """Force many small bins and face chunks: the z-buffer carries over, the result is unchanged."""
    from inference_server.kernels.raster import triton as tr

    pos, faces, _ = uv_sphere(6, 12, 0.45)
    old = tr.MAX_PAIRS
    tr.MAX_PAIRS = 16
    try:
        return compare_raster(pos, faces, K.orthographic("front"), 32, 32)
    finally:
        tr.MAX_PAIRS = old


def check_interpolate_and_uv() -> dict[str, float]:
    pos, faces, uv = uv_sphere(6, 12, 0.45, uv_margin=0.05)
    ref = K.rasterize_uv(uv, faces, 24, 20, backend="reference")
    tri = K.rasterize_uv(t(uv), t(faces), 24, 20, backend="triton")
    a = K.interpolate(ref, faces, pos, backend="reference")
    b = K.interpolate(tri, t(faces), t(pos), backend="triton")
    return {"face_id_mismatch": int((n(tri.face_id) != ref.face_id).sum()), "interp_err": float(np.abs(n(b) - a).max())}


def check_bake() -> dict[str, float]:
    pos, faces, uv = uv_sphere(6, 12, 0.45, uv_margin=0.02)
    colour = (0.5 + 0.45 * np.sin(5 * pos + np.array([0.0, 1.0, 2.0]))).astype(np.float32)
    views = []
    cams = [K.orthographic("front"), K.orthographic("left"), K.perspective("top", 40.0, distance=2.0)]
    for vp, wgt in zip(cams, [1.0, 0.3, 0.7]):
        r = K.rasterize(pos, faces, vp, 24, 24)
        views.append(K.BakeView(K.interpolate(r, faces, colour), vp, wgt))
    views[1].mask = np.ones((24, 24), bool)
    views[1].mask[:, :8] = False
    a = K.bake_views(pos, faces, uv, views, 24, backend="reference")
    b = K.bake_views(t(pos), t(faces), t(uv), views, 24, backend="triton")
    return {
        "mask_mismatch": int((n(b.mask) != a.mask).sum()),
        "covered": int(a.mask.sum()),
        "texture_err": float(np.abs(n(b.texture) - a.texture).max()),
        "weight_err": float(np.abs(n(b.weight) - a.weight).max()),
    }


def check_fill() -> dict[str, float]:
    pos, faces, uv = uv_sphere(6, 12, 0.45, uv_margin=0.05)
    rng = np.random.default_rng(3)
    tex = rng.random((24, 20, 3)).astype(np.float32)
    mask = rng.random((24, 20)) < 0.3
    a = K.fill_holes(tex, mask, backend="reference")
    b = K.fill_holes(t(tex), t(mask), backend="triton")
    c = K.fill_holes(tex, mask, positions=pos, uvs=uv, faces=faces, backend="reference")
    d = K.fill_holes(t(tex), t(mask), positions=t(pos), uvs=t(uv), faces=t(faces), backend="triton")
    return {"image_err": float(np.abs(n(b) - a).max()), "mesh_err": float(np.abs(n(d) - c).max())}


CHECKS: dict[str, Callable[[], dict[str, float]]] = {
    name[len("check_") :]: fn for name, fn in list(globals().items()) if name.startswith("check_") and callable(fn)
}


def run_all() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, fn in CHECKS.items():
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with the message
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


if __name__ == "__main__":
    with open(sys.argv[1], "w") as fh:
        json.dump(run_all(), fh, indent=1)

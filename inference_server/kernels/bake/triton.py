"""GPU baker: torch set-up, Triton accumulation (torch tensors in and out).

Same rules as ``reference``: texel samples from a Triton UV raster, per view a Triton depth
raster, torch passes for the depth-edge map and its dilation (max-pool), then one Triton
program per block of texels that tests facing and angle, projects, checks visibility and adds
the weighted bilinear colour. Each texel owns its accumulator slot: no atomics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ..cameras import camera_info
from ..raster import Raster
from ..raster import triton as raster_tr
from ._prep import BakeView, depth_model, pixel_footprint

BLOCK = 256


@triton.jit
def _accumulate(
    pos_ptr, nrm_ptr, n, vp_ptr, scale, tx, ty, tz, ex, ey, ez,
    lin_ptr, valid_ptr, img_ptr, width, height, weight, footprint, cos_min, power, tol,
    acc_ptr, wsum_ptr, ORTHO: tl.constexpr, NCH: tl.constexpr, BLOCK: tl.constexpr,
):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = i < n
    x = tl.load(pos_ptr + 3 * i, mask=ok, other=0.0).to(tl.float64)
    y = tl.load(pos_ptr + 3 * i + 1, mask=ok, other=0.0).to(tl.float64)
    z = tl.load(pos_ptr + 3 * i + 2, mask=ok, other=0.0).to(tl.float64)
    nx = tl.load(nrm_ptr + 3 * i, mask=ok, other=0.0).to(tl.float64)
    ny = tl.load(nrm_ptr + 3 * i + 1, mask=ok, other=0.0).to(tl.float64)
    nz = tl.load(nrm_ptr + 3 * i + 2, mask=ok, other=0.0).to(tl.float64)
    if ORTHO:
        dx = x * 0.0 + tx
        dy = y * 0.0 + ty
        dz = z * 0.0 + tz
    else:
        dx = ex - x
        dy = ey - y
        dz = ez - z
        norm = tl.sqrt(dx * dx + dy * dy + dz * dz)
        norm = tl.where(norm > 0, norm, 1.0)
        dx = dx / norm
        dy = dy / norm
        dz = dz / norm
    c = nx * dx + ny * dy + nz * dz
    ok &= c >= cos_min
    m00 = tl.load(vp_ptr + 0)
    m01 = tl.load(vp_ptr + 1)
    m02 = tl.load(vp_ptr + 2)
    m03 = tl.load(vp_ptr + 3)
    m10 = tl.load(vp_ptr + 4)
    m11 = tl.load(vp_ptr + 5)
    m12 = tl.load(vp_ptr + 6)
    m13 = tl.load(vp_ptr + 7)
    m20 = tl.load(vp_ptr + 8)
    m21 = tl.load(vp_ptr + 9)
    m22 = tl.load(vp_ptr + 10)
    m23 = tl.load(vp_ptr + 11)
    m30 = tl.load(vp_ptr + 12)
    m31 = tl.load(vp_ptr + 13)
    m32 = tl.load(vp_ptr + 14)
    m33 = tl.load(vp_ptr + 15)
    cw = m30 * x + m31 * y + m32 * z + m33
    ok &= cw > 1e-9
    cw_safe = tl.where(ok, cw, 1.0)
    sx = ((m00 * x + m01 * y + m02 * z + m03) / cw_safe + 1.0) * 0.5 * width
    sy = (1.0 - (m10 * x + m11 * y + m12 * z + m13) / cw_safe) * 0.5 * height
    fx = tl.floor(sx)
    fy = tl.floor(sy)
    ok &= (fx >= 0) & (fx < width) & (fy >= 0) & (fy < height)
    pix = tl.where(ok, fy * width + fx, 0.0).to(tl.int64)
    ok &= tl.load(valid_ptr + pix, mask=ok, other=0) != 0
    if ORTHO:
        lin = (m20 * x + m21 * y + m22 * z + m23) * scale
        fp = footprint + x * 0.0
    else:
        lin = cw
        fp = footprint * tl.abs(lin)
    tan = tl.sqrt(tl.maximum(1.0 - c * c, 0.0)) / tl.maximum(c, 1e-6)
    lin_map = tl.load(lin_ptr + pix, mask=ok, other=0.0).to(tl.float64)
    ok &= tl.abs(lin - lin_map) <= tol + fp * tan
    wt = tl.where(ok & (c > 0), weight * tl.exp(power * tl.log(tl.where(c > 0, c, 1.0))), 0.0)
    bx = tl.minimum(tl.maximum(sx - 0.5, 0.0), width - 1.0)
    by = tl.minimum(tl.maximum(sy - 0.5, 0.0), height - 1.0)
    x0 = tl.minimum(tl.floor(bx), tl.maximum(width - 2.0, 0.0))
    y0 = tl.minimum(tl.floor(by), tl.maximum(height - 2.0, 0.0))
    x1 = tl.minimum(x0 + 1.0, width - 1.0)
    y1 = tl.minimum(y0 + 1.0, height - 1.0)
    ax = bx - x0
    ay = by - y0
    p00 = tl.where(ok, y0 * width + x0, 0.0).to(tl.int64) * NCH
    p01 = tl.where(ok, y0 * width + x1, 0.0).to(tl.int64) * NCH
    p10 = tl.where(ok, y1 * width + x0, 0.0).to(tl.int64) * NCH
    p11 = tl.where(ok, y1 * width + x1, 0.0).to(tl.int64) * NCH
    for k in tl.static_range(NCH):
        v00 = tl.load(img_ptr + p00 + k, mask=ok, other=0.0).to(tl.float64)
        v01 = tl.load(img_ptr + p01 + k, mask=ok, other=0.0).to(tl.float64)
        v10 = tl.load(img_ptr + p10 + k, mask=ok, other=0.0).to(tl.float64)
        v11 = tl.load(img_ptr + p11 + k, mask=ok, other=0.0).to(tl.float64)
        top = v00 * (1 - ax) + v01 * ax
        bottom = v10 * (1 - ax) + v11 * ax
        old = tl.load(acc_ptr + NCH * i + k, mask=ok, other=0.0)
        tl.store(acc_ptr + NCH * i + k, (old + wt * (top * (1 - ay) + bottom * ay)).to(tl.float32), mask=ok)
    old_w = tl.load(wsum_ptr + i, mask=ok, other=0.0)
    tl.store(wsum_ptr + i, (old_w + wt).to(tl.float32), mask=ok)


def _face_normals(pos: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    p = pos[tri]
    n = torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=1)
    length = n.norm(dim=1, keepdim=True)
    return n / torch.where(length > 0, length, torch.ones_like(length))


def _view_valid(r: Raster, lin: torch.Tensor, mask: torch.Tensor | None, ortho: bool, depth_edge: float,
                k: float, erode_px: int) -> torch.Tensor:
    """``_prep.view_maps``'s rejection rules in torch: (H, W) bool of pixels allowed to contribute."""
    covered = r.face_id >= 0
    ok = covered if mask is None else covered & mask
    lo_x = torch.fmin(lin[:, 1:], lin[:, :-1])
    lo_y = torch.fmin(lin[1:, :], lin[:-1, :])
    thr_x = torch.clamp(k * lo_x, min=depth_edge) if not ortho else torch.full_like(lo_x, max(depth_edge, k))
    thr_y = torch.clamp(k * lo_y, min=depth_edge) if not ortho else torch.full_like(lo_y, max(depth_edge, k))
    dx = ((lin[:, 1:] - lin[:, :-1]).abs() > thr_x) & covered[:, 1:] & covered[:, :-1]
    dy = ((lin[1:, :] - lin[:-1, :]).abs() > thr_y) & covered[1:, :] & covered[:-1, :]
    edge = torch.zeros_like(covered)
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    bad = (~ok | edge).to(torch.float32)[None, None]
    if erode_px > 0:
        bad = F.max_pool2d(F.pad(bad, (erode_px,) * 4, value=1.0), 2 * erode_px + 1, stride=1)
    return bad[0, 0] == 0


def bake_views(
    positions: Any, faces: Any, uvs: Any, views: Sequence[BakeView], size: tuple[int, int], *,
    normals: Any, cos_power: float, max_angle_deg: float, erode_px: int, depth_edge: float | None,
    depth_tolerance: float | None, on_view: Callable[[int, int], None] | None,
) -> Any:
    from . import BakeResult

    dev = positions.device if isinstance(positions, torch.Tensor) else torch.device("cpu")
    pos = torch.as_tensor(positions, device=dev).to(torch.float32).reshape(-1, 3).contiguous()
    tri = torch.as_tensor(faces, device=dev).to(torch.int64).reshape(-1, 3).contiguous()
    uv = torch.as_tensor(uvs, device=dev).to(torch.float64).reshape(-1, 2)
    height, width = size
    shapes = [tuple(v.image.shape) for v in views]
    nch = max((1 if len(s) == 2 else s[2] for s in shapes), default=3)
    texture = torch.zeros((height, width, nch), dtype=torch.float32, device=dev)
    weight_map = torch.zeros((height, width), dtype=torch.float32, device=dev)
    if tri.shape[0] == 0 or not views:
        return BakeResult(texture, weight_map > 0, weight_map)
    diag = float((pos.max(0).values - pos.min(0).values).norm())
    depth_edge = 0.02 * diag if depth_edge is None else float(depth_edge)
    tol = 0.005 * diag if depth_tolerance is None else float(depth_tolerance)
    cos_min = math.cos(math.radians(max_angle_deg))
    max_slope = math.tan(math.radians(min(max_angle_deg, 89.0)))

    uv_pos = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2, torch.zeros_like(uv[:, 0])], 1)
    uvr = raster_tr.rasterize(uv_pos, tri, np.eye(4), width, height)
    index = torch.nonzero(uvr.face_id.reshape(-1) >= 0).reshape(-1)
    sample_pos = raster_tr.interpolate(uvr, tri, pos).reshape(-1, 3)[index].contiguous()
    if normals is None:
        sample_nrm = _face_normals(pos, tri)[uvr.face_id.reshape(-1)[index].to(torch.int64)]
    else:
        vn = torch.as_tensor(normals, device=dev).to(torch.float32).reshape(-1, 3)
        sample_nrm = raster_tr.interpolate(uvr, tri, vn).reshape(-1, 3)[index]
        length = sample_nrm.norm(dim=1, keepdim=True)
        sample_nrm = sample_nrm / torch.where(length > 0, length, torch.ones_like(length))
    sample_nrm = sample_nrm.contiguous()
    n = index.numel()
    acc = torch.zeros((n, nch), dtype=torch.float32, device=dev)
    wsum = torch.zeros(n, dtype=torch.float32, device=dev)
    for vi, view in enumerate(views):
        if on_view is not None:
            on_view(vi, len(views))
        image = torch.as_tensor(view.image, device=dev).to(torch.float32)
        if image.dim() == 2:
            image = image[:, :, None]
        image = image.contiguous()
        h, w = int(image.shape[0]), int(image.shape[1])
        vp = np.asarray(torch.as_tensor(view.view_proj).cpu(), np.float64).reshape(4, 4)
        cam = camera_info(vp)
        model = depth_model(vp, cam.orthographic)
        footprint = pixel_footprint(vp, w, h)
        r = raster_tr.rasterize(pos, tri, vp, w, h, bary=False)
        ndc = 2.0 * r.depth.to(torch.float64) - 1.0
        lin = ndc * model.scale if model.orthographic else model.b / (ndc + model.a)
        lin = torch.where(torch.isfinite(r.depth), lin, torch.full_like(lin, float("inf"))).to(torch.float32)
        mask = None if view.mask is None else torch.as_tensor(view.mask, device=dev).to(torch.bool).reshape(h, w)
        valid = _view_valid(r, lin, mask, model.orthographic, depth_edge, 1.5 * max_slope * footprint, erode_px)
        if n:
            _accumulate[(triton.cdiv(n, BLOCK),)](
                sample_pos, sample_nrm, n, torch.as_tensor(vp, dtype=torch.float64, device=dev).reshape(-1),
                float(model.scale), *(float(v) for v in cam.toward_camera), *(float(v) for v in cam.eye),
                lin.contiguous(), valid.to(torch.uint8).contiguous(), image, w, h, float(view.weight),
                float(footprint), float(cos_min), float(cos_power), float(tol), acc, wsum,
                ORTHO=bool(cam.orthographic), NCH=nch, BLOCK=BLOCK,
            )
    hit = wsum > 0
    texture.reshape(-1, nch)[index[hit]] = acc[hit] / wsum[hit, None]
    weight_map.reshape(-1)[index] = wsum
    return BakeResult(texture, weight_map > 0, weight_map, uvr)

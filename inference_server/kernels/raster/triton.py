"""GPU rasterizer: Triton, a binned tile rasterizer (torch tensors in and out).

Faces are set up in torch (same fixed-point snapping and orientation as ``_setup``), then binned
into 16 x 16-pixel tiles: one (tile, face) pair per tile a face's bounding box touches, sorted by
tile with a stable sort so each tile sees its faces in ascending order. One Triton program per
tile keeps the tile's z-buffer in registers and walks its faces: no atomics, and the same ties as
the sequential reference. Faces are processed in chunks of at most ``MAX_PAIRS`` pairs (the
z-buffer carries over between chunks), so memory stays bounded for any face count.

Runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (how the tests run it).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from ._setup import GUARD_PIXELS, HALF_SUBPIXEL, MIN_W, SUBPIXEL, Raster

TILE = 16
MAX_PAIRS = 1 << 22
BLOCK = 256


@triton.jit
def _raster_tiles(
    starts_ptr, pair_ptr, fid_ptr, x_ptr, y_ptr, z_ptr, tl_ptr, area_ptr,
    out_fid_ptr, out_depth_ptr, width, height, ntx,
    TILE: tl.constexpr, SUB: tl.constexpr,
):
    t = tl.program_id(0)
    tx = t % ntx
    ty = t // ntx
    cols = tx * TILE + tl.arange(0, TILE)
    rows = ty * TILE + tl.arange(0, TILE)
    inb = (rows[:, None] < height) & (cols[None, :] < width)
    offs = rows[:, None] * width + cols[None, :]
    zbuf = tl.load(out_depth_ptr + offs, mask=inb, other=float("inf"))
    fbuf = tl.load(out_fid_ptr + offs, mask=inb, other=-1)
    px = cols[None, :].to(tl.int64) * SUB + SUB // 2
    py = rows[:, None].to(tl.int64) * SUB + SUB // 2
    start = tl.load(starts_ptr + t)
    end = tl.load(starts_ptr + t + 1)
    for k in range(start, end):
        f = tl.load(pair_ptr + k)
        x0 = tl.load(x_ptr + 3 * f)
        x1 = tl.load(x_ptr + 3 * f + 1)
        x2 = tl.load(x_ptr + 3 * f + 2)
        y0 = tl.load(y_ptr + 3 * f)
        y1 = tl.load(y_ptr + 3 * f + 1)
        y2 = tl.load(y_ptr + 3 * f + 2)
        t0 = tl.load(tl_ptr + 3 * f)
        t1 = tl.load(tl_ptr + 3 * f + 1)
        t2 = tl.load(tl_ptr + 3 * f + 2)
        e0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
        e1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
        e2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
        inside = (e0 + t0 > 0) & (e1 + t1 > 0) & (e2 + t2 > 0)
        z0 = tl.load(z_ptr + 3 * f)
        z1 = tl.load(z_ptr + 3 * f + 1)
        z2 = tl.load(z_ptr + 3 * f + 2)
        fa = tl.load(area_ptr + f)
        z = ((e0.to(tl.float64) * z0 + e1.to(tl.float64) * z1 + e2.to(tl.float64) * z2) / fa).to(tl.float32)
        win = inside & (z >= 0.0) & (z <= 1.0) & (z < zbuf)
        zbuf = tl.where(win, z, zbuf)
        fbuf = tl.where(win, tl.load(fid_ptr + f), fbuf)
    tl.store(out_depth_ptr + offs, zbuf, mask=inb)
    tl.store(out_fid_ptr + offs, fbuf, mask=inb)


@triton.jit
def _resolve_bary(fid_ptr, faces_ptr, ix_ptr, iy_ptr, invw_ptr, bary_ptr, width, n, BLOCK: tl.constexpr, SUB: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inb = offs < n
    f = tl.load(fid_ptr + offs, mask=inb, other=-1)
    ok = inb & (f >= 0)
    fs = tl.where(ok, f, 0).to(tl.int64)
    a = tl.load(faces_ptr + 3 * fs, mask=ok, other=0)
    b = tl.load(faces_ptr + 3 * fs + 1, mask=ok, other=0)
    c = tl.load(faces_ptr + 3 * fs + 2, mask=ok, other=0)
    px = (offs % width).to(tl.int64) * SUB + SUB // 2
    py = (offs // width).to(tl.int64) * SUB + SUB // 2
    xa = tl.load(ix_ptr + a, mask=ok, other=0)
    xb = tl.load(ix_ptr + b, mask=ok, other=0)
    xc = tl.load(ix_ptr + c, mask=ok, other=0)
    ya = tl.load(iy_ptr + a, mask=ok, other=0)
    yb = tl.load(iy_ptr + b, mask=ok, other=0)
    yc = tl.load(iy_ptr + c, mask=ok, other=0)
    e0 = ((xc - xb) * (py - yb) - (yc - yb) * (px - xb)).to(tl.float64)
    e1 = ((xa - xc) * (py - yc) - (ya - yc) * (px - xc)).to(tl.float64)
    e2 = ((xb - xa) * (py - ya) - (yb - ya) * (px - xa)).to(tl.float64)
    s = tl.where(ok, e0 + e1 + e2, 1.0)
    q0 = e0 / s * tl.load(invw_ptr + a, mask=ok, other=1.0)
    q1 = e1 / s * tl.load(invw_ptr + b, mask=ok, other=1.0)
    q2 = e2 / s * tl.load(invw_ptr + c, mask=ok, other=1.0)
    qs = tl.where(ok, q0 + q1 + q2, 1.0)
    tl.store(bary_ptr + 3 * offs, tl.where(ok, q0 / qs, 0.0).to(tl.float32), mask=inb)
    tl.store(bary_ptr + 3 * offs + 1, tl.where(ok, q1 / qs, 0.0).to(tl.float32), mask=inb)
    tl.store(bary_ptr + 3 * offs + 2, tl.where(ok, q2 / qs, 0.0).to(tl.float32), mask=inb)


def _transform(positions: torch.Tensor, view_proj: Any, width: int, height: int) -> tuple[torch.Tensor, ...]:
    """``_setup.transform_vertices`` in torch (float64)."""
    dev = positions.device
    p = positions.to(torch.float64).reshape(-1, 3)
    m = torch.as_tensor(view_proj, dtype=torch.float64).reshape(4, 4).to(dev)
    clip = p @ m[:, :3].T + m[:, 3]
    w = clip[:, 3]
    valid = torch.isfinite(clip).all(dim=1) & (w > MIN_W)
    w_safe = torch.where(valid, w, torch.ones_like(w))
    sx = (clip[:, 0] / w_safe + 1.0) * 0.5 * width
    sy = (1.0 - clip[:, 1] / w_safe) * 0.5 * height
    z = (clip[:, 2] / w_safe + 1.0) * 0.5
    valid &= (sx.abs() < GUARD_PIXELS) & (sy.abs() < GUARD_PIXELS)
    zero = torch.zeros_like(sx)
    ix = torch.where(valid, torch.round(sx * SUBPIXEL), zero).to(torch.int64)
    iy = torch.where(valid, torch.round(sy * SUBPIXEL), zero).to(torch.int64)
    return ix, iy, torch.where(valid, z, zero), torch.where(valid, 1.0 / w_safe, zero), valid


def _ceil_div(a: torch.Tensor, b: int) -> torch.Tensor:
    return -torch.div(-a, b, rounding_mode="floor")


def rasterize(
    positions: torch.Tensor, faces: torch.Tensor, view_proj: Any, width: int, height: int, *, bary: bool = True
) -> Raster:
    dev = positions.device
    faces = torch.as_tensor(faces, device=dev).to(torch.int64).reshape(-1, 3).contiguous()
    out_fid = torch.full((height, width), -1, dtype=torch.int32, device=dev)
    out_depth = torch.full((height, width), float("inf"), dtype=torch.float32, device=dev)
    out_bary = torch.zeros((height, width, 3), dtype=torch.float32, device=dev)
    if faces.shape[0] == 0:
        return Raster(out_fid, out_bary, out_depth)
    if int(faces.min()) < 0 or int(faces.max()) >= positions.shape[0]:
        raise ValueError("face indices out of range")
    ix, iy, z, inv_w, valid = _transform(positions, view_proj, width, height)
    ntx, nty = (width + TILE - 1) // TILE, (height + TILE - 1) // TILE
    nf = faces.shape[0]
    chunk = max(1, min(nf, MAX_PAIRS // 4))
    for lo in range(0, nf, chunk):
        _raster_chunk(faces[lo : lo + chunk], lo, ix, iy, z, valid, width, height, ntx, nty, out_fid, out_depth)
    if bary:
        n = width * height
        _resolve_bary[(triton.cdiv(n, BLOCK),)](
            out_fid, faces, ix, iy, inv_w, out_bary, width, n, BLOCK=BLOCK, SUB=SUBPIXEL
        )
    return Raster(out_fid, out_bary, out_depth)


def _raster_chunk(
    faces: torch.Tensor, first: int, ix: torch.Tensor, iy: torch.Tensor, z: torch.Tensor, valid: torch.Tensor,
    width: int, height: int, ntx: int, nty: int, out_fid: torch.Tensor, out_depth: torch.Tensor,
) -> None:
    """Set up, bin and draw one chunk of faces (ids offset by ``first``) into the z-buffer."""
    dev = faces.device
    x, y, zz = ix[faces], iy[faces], z[faces]  # (F, 3)
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
    keep = valid[faces].all(dim=1) & (area != 0)
    # Orient positively: swap vertices 1 and 2 of negative faces (barycentrics are resolved later).
    neg = area < 0
    order = torch.tensor([0, 2, 1], device=dev)
    x = torch.where(neg[:, None], x[:, order], x)
    y = torch.where(neg[:, None], y[:, order], y)
    zz = torch.where(neg[:, None], zz[:, order], zz)
    area = area.abs()
    cx0 = _ceil_div(x.min(dim=1).values - HALF_SUBPIXEL, SUBPIXEL).clamp(min=0)
    cx1 = torch.div(x.max(dim=1).values - HALF_SUBPIXEL, SUBPIXEL, rounding_mode="floor").clamp(max=width - 1)
    cy0 = _ceil_div(y.min(dim=1).values - HALF_SUBPIXEL, SUBPIXEL).clamp(min=0)
    cy1 = torch.div(y.max(dim=1).values - HALF_SUBPIXEL, SUBPIXEL, rounding_mode="floor").clamp(max=height - 1)
    keep &= (cx0 <= cx1) & (cy0 <= cy1)
    idx = torch.nonzero(keep).reshape(-1)
    if idx.numel() == 0:
        return
    x, y, zz, area = x[idx], y[idx], zz[idx], area[idx]
    # Top-left rule per directed edge (v1->v2, v2->v0, v0->v1): dy < 0, or dy == 0 and dx > 0.
    dx = torch.stack([x[:, 2] - x[:, 1], x[:, 0] - x[:, 2], x[:, 1] - x[:, 0]], 1)
    dy = torch.stack([y[:, 2] - y[:, 1], y[:, 0] - y[:, 2], y[:, 1] - y[:, 0]], 1)
    top_left = ((dy < 0) | ((dy == 0) & (dx > 0))).to(torch.int64)
    tx0, tx1 = cx0[idx] // TILE, cx1[idx] // TILE
    ty0, ty1 = cy0[idx] // TILE, cy1[idx] // TILE
    span_x = tx1 - tx0 + 1
    count = span_x * (ty1 - ty0 + 1)
    # Bin in slices of at most MAX_PAIRS pairs (a slice's faces stay in ascending order).
    csum = torch.cumsum(count, 0)
    lo = 0
    nf = idx.numel()
    while lo < nf:
        base = int(csum[lo - 1]) if lo > 0 else 0
        hi = int(torch.searchsorted(csum, torch.tensor(base + MAX_PAIRS, device=dev), right=True))
        hi = max(hi, lo + 1)
        sel = slice(lo, hi)
        cnt = count[sel]
        total = int(cnt.sum())
        local_face = torch.repeat_interleave(torch.arange(lo, hi, device=dev), cnt)
        offset = torch.arange(total, device=dev) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
        tile = (ty0[local_face] + offset // span_x[local_face]) * ntx + tx0[local_face] + offset % span_x[local_face]
        tile_sorted, perm = torch.sort(tile, stable=True)
        pairs = local_face[perm].contiguous()
        starts = torch.zeros(ntx * nty + 1, dtype=torch.int64, device=dev)
        starts[1:] = torch.cumsum(torch.bincount(tile_sorted, minlength=ntx * nty), 0)
        _raster_tiles[(ntx * nty,)](
            starts, pairs, (idx + first).to(torch.int32).contiguous(), x.contiguous(), y.contiguous(),
            zz.contiguous(), top_left.contiguous(), area.to(torch.float64).contiguous(),
            out_fid, out_depth, width, height, ntx, TILE=TILE, SUB=SUBPIXEL,
        )
        lo = hi


def interpolate(raster: Raster, faces: Any, attributes: Any) -> torch.Tensor:
    """(H, W, C) float32 on the raster's device: a gather and a weighted sum (bandwidth-bound, torch is enough)."""
    fid = raster.face_id
    dev = fid.device
    attr = torch.as_tensor(attributes, device=dev).to(torch.float32)
    attr = attr.reshape(attr.shape[0], -1)
    tri = torch.as_tensor(faces, device=dev).to(torch.int64).reshape(-1, 3)
    out = torch.zeros(fid.shape + (attr.shape[1],), dtype=torch.float32, device=dev)
    covered = fid >= 0
    if tri.shape[0] == 0 or not bool(covered.any()):
        return out
    corners = tri[fid[covered].to(torch.int64)]  # (N, 3)
    out[covered] = torch.einsum("nk,nkc->nc", raster.bary[covered].to(torch.float32), attr[corners])
    return out

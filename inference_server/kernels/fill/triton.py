"""GPU hole filling: torch + Triton (torch tensors in and out).

The texel-to-vertex splat and the painting of chart texels run in torch on the device; the
graph propagation itself (a multi-source Dijkstra over the welded mesh) runs in scipy on the
host: it is O(E log V) on per-vertex data, small next to the texture work. Dilation is a
Triton kernel, one launch per pass (double-buffered); push-pull is torch pooling.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import triton
import triton.language as tl

from . import _mesh

BLOCK = 256


@triton.jit
def _dilate_pass(tex_ptr, known_ptr, out_ptr, out_known_ptr, width, height, NCH: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inb = offs < width * height
    y = offs // width
    x = offs % width
    kn = tl.load(known_ptr + offs, mask=inb, other=1) != 0
    cnt = tl.zeros([BLOCK], dtype=tl.float32)
    # Same neighbour order as the reference (row-major over the 3 x 3 window, centre skipped).
    for d in tl.static_range(9):
        if d != 4:
            yy = y + (d // 3 - 1)
            xx = x + (d % 3 - 1)
            ok = inb & ~kn & (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            nb = tl.where(ok, yy * width + xx, 0)
            cnt += (tl.load(known_ptr + nb, mask=ok, other=0) != 0).to(tl.float32)
    grow = inb & ~kn & (cnt > 0)
    for k in tl.static_range(NCH):
        total = tl.zeros([BLOCK], dtype=tl.float32)
        for d in tl.static_range(9):
            if d != 4:
                yy = y + (d // 3 - 1)
                xx = x + (d % 3 - 1)
                ok = grow & (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
                nb = tl.where(ok, yy * width + xx, 0)
                nk = tl.load(known_ptr + nb, mask=ok, other=0) != 0
                total += tl.load(tex_ptr + nb * NCH + k, mask=ok & nk, other=0.0)
        own = tl.load(tex_ptr + offs * NCH + k, mask=inb, other=0.0)
        tl.store(out_ptr + offs * NCH + k, tl.where(grow, total / tl.where(grow, cnt, 1.0), own), mask=inb)
    tl.store(out_known_ptr + offs, (kn | grow).to(tl.uint8), mask=inb)


def dilate(tex: torch.Tensor, known: torch.Tensor, passes: int) -> tuple[torch.Tensor, torch.Tensor]:
    h, w, nch = tex.shape
    a, b = tex.contiguous().clone(), torch.empty_like(tex)
    ka, kb = known.to(torch.uint8).contiguous().clone(), torch.empty_like(known, dtype=torch.uint8)
    count = int(ka.sum())
    for _ in range(passes):
        _dilate_pass[(triton.cdiv(h * w, BLOCK),)](a, ka, b, kb, w, h, NCH=nch, BLOCK=BLOCK)
        a, b, ka, kb = b, a, kb, ka
        new = int(ka.sum())
        if new == count:
            break
        count = new
    return a, ka.to(torch.bool)


def push_pull(tex: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``_pushpull.push_pull`` in torch."""
    if bool(known.all()):
        return tex.clone()
    if not bool(known.any()):
        return torch.zeros_like(tex)
    levels = []
    col = tex * known[:, :, None]
    wt = known.to(torch.float32)
    while True:
        levels.append((col, wt))
        h, w = wt.shape
        if h == 1 and w == 1:
            break
        ph, pw = h + (h & 1), w + (w & 1)
        if (ph, pw) != (h, w):
            col = torch.nn.functional.pad(col, (0, 0, 0, pw - w, 0, ph - h))
            wt = torch.nn.functional.pad(wt, (0, pw - w, 0, ph - h))
        col = col.reshape(ph // 2, 2, pw // 2, 2, -1).sum(dim=(1, 3))
        wt = wt.reshape(ph // 2, 2, pw // 2, 2).sum(dim=(1, 3))
    top_col, top_wt = levels[-1]
    filled = top_col / top_wt.clamp(min=1e-12)[:, :, None]
    for lcol, lwt in reversed(levels[:-1]):
        lh, lw = lwt.shape
        up = filled.repeat_interleave(2, 0).repeat_interleave(2, 1)[:lh, :lw]
        have = lwt > 0
        filled = torch.where(have[:, :, None], lcol / torch.where(have, lwt, torch.ones_like(lwt))[:, :, None], up)
    return torch.where(known[:, :, None], tex, filled)


def fill_holes(
    texture: Any, mask: Any, *, mesh: Any, positions: Any, uvs: Any, faces: Any, chart_mask: Any,
    uv_raster: Any, gutter_px: int, smooth_iterations: int,
) -> torch.Tensor:
    dev = texture.device
    tex = texture.to(torch.float32)
    squeeze = tex.dim() == 2
    tex = (tex[:, :, None] if squeeze else tex).clone()
    known = torch.as_tensor(mask, device=dev).to(torch.bool).clone()
    if mesh is not None:
        positions, uvs, faces = mesh.positions, mesh.uvs, mesh.faces
    h, w, nch = tex.shape
    if positions is not None and uvs is not None and faces is not None and len(faces):
        from ..raster import triton as raster_tr

        pos = torch.as_tensor(positions, device=dev).to(torch.float32).reshape(-1, 3)
        tri = torch.as_tensor(faces, device=dev).to(torch.int64).reshape(-1, 3)
        uv = torch.as_tensor(uvs, device=dev).to(torch.float64).reshape(-1, 2)
        uv_pos = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2, torch.zeros_like(uv[:, 0])], 1)
        if uv_raster is not None and tuple(uv_raster.face_id.shape) == (h, w):
            uvr = uv_raster
            uvr = type(uvr)(*(torch.as_tensor(a, device=dev) for a in (uvr.face_id, uvr.bary, uvr.depth)))
        else:
            uvr = raster_tr.rasterize(uv_pos, tri, np.eye(4), w, h)
        charts = uvr.face_id >= 0 if chart_mask is None else torch.as_tensor(chart_mask, device=dev).to(torch.bool)
        known &= charts
        # Splat known texels onto their face's vertices (barycentric weights), on the device.
        sel = known & (uvr.face_id >= 0)
        corner = tri[uvr.face_id[sel].to(torch.int64)].reshape(-1)
        bw = uvr.bary[sel].to(torch.float64).reshape(-1)
        col = tex[sel].to(torch.float64)
        nv = pos.shape[0]
        wsum = torch.zeros(nv, dtype=torch.float64, device=dev).index_add_(0, corner, bw)
        vcol = torch.zeros((nv, nch), dtype=torch.float64, device=dev).index_add_(
            0, corner, (bw.reshape(-1, 3)[:, :, None] * col[:, None, :]).reshape(-1, nch))
        seen = wsum > 1e-6
        vcol[seen] /= wsum[seen, None]
        colours, defined = _mesh.propagate(pos.cpu().numpy(), tri.cpu().numpy(), vcol.float().cpu().numpy(),
                                           seen.cpu().numpy(), smooth_iterations)
        colours_t = torch.from_numpy(colours).to(dev)
        defined_t = torch.from_numpy(defined).to(dev)
        todo = ~known & (uvr.face_id >= 0)
        ft = tri[uvr.face_id[todo].to(torch.int64)]
        ok = defined_t[ft].all(dim=1)
        rows, cols = torch.nonzero(todo, as_tuple=True)
        rows, cols, ft = rows[ok], cols[ok], ft[ok]
        tex[rows, cols] = torch.einsum("nk,nkc->nc", uvr.bary[rows, cols], colours_t[ft])
        known[rows, cols] = True
    elif chart_mask is not None:
        known &= torch.as_tensor(chart_mask, device=dev).to(torch.bool)
    if gutter_px > 0 and bool(known.any()):
        tex, known = dilate(tex, known, gutter_px)
    out = push_pull(tex, known)
    return out[:, :, 0] if squeeze else out

"""From a decoded latent set to a surface: the VAE field as the extractor's callable.

The shared hierarchical extractor (:mod:`inference_server.meshing.extract`) evaluates the field
on the same grid points upstream does (``-b + i 2b / res``, 97^3 then near-surface cells at 193^3
and 385^3 for octree 384) but maps a marching-cubes vertex at fractional index ``i`` to
``-b + i 2b / res``, whereas upstream maps it to ``i / (res + 1) * 2b - b``.
:func:`to_upstream_vertices` applies the difference so the meshes are upstream's.
"""

from __future__ import annotations

import numpy as np
import torch

from .models.vae import ShapeVAE

CPU_CHUNK = 16_384
GPU_CHUNK_RANGE = (16_384, 262_144)
# Rough activation bytes per query point per element byte: the 4x MLP hidden layer dominates
# (3072 values), plus the query stream, its norms and the attention output (about 4 x 768).
_ELEMS_PER_POINT = 3 * 3072 + 4 * 768


def to_upstream_vertices(vertices: np.ndarray, bounds: float, resolution: int) -> np.ndarray:
    """Extractor vertices -> upstream's: index ``i = (x + b) res / 2b`` -> ``i / (res + 1) 2b - b``."""
    v = np.asarray(vertices, np.float64)
    return ((v + bounds) * (resolution / (resolution + 1.0)) - bounds).astype(np.float32)


def decode_chunk_size(device: torch.device, dtype: torch.dtype, width: int = 768) -> int:
    """Query points per decoder call: as many as fit in half the free memory, within bounds."""
    if device.type != "cuda":
        return CPU_CHUNK
    free, _total = torch.cuda.mem_get_info(device)
    per_point = _ELEMS_PER_POINT * (width / 768) * torch.finfo(dtype).bits // 8
    chunk = int(free * 0.5 // max(per_point, 1))
    lo, hi = GPU_CHUNK_RANGE
    return max(lo, min(hi, chunk // 4096 * 4096))


class LatentField:
    """``field(points (P, 3) float32) -> (P,) float32``: the shape's logits, positive inside.

    The cross-attention keys/values of the latent set are computed once and reused by every
    chunk; points travel to the device once per extractor batch and values come back once.
    """

    def __init__(self, vae: ShapeVAE, decoded: torch.Tensor, chunk_size: int | None = None) -> None:
        if decoded.shape[0] != 1:
            raise ValueError("a field is one shape: pass one decoded latent set [1, N, width]")
        self.vae = vae
        self.device = decoded.device
        self.dtype = vae.decoder.query_proj.weight.dtype
        with torch.no_grad():
            self.kv = vae.field_keys_values(decoded.to(self.dtype))
        self.chunk_size = chunk_size or decode_chunk_size(self.device, self.dtype, vae.config.width)
        self.points_evaluated = 0

    @torch.no_grad()
    def evaluate(self, points: torch.Tensor) -> torch.Tensor:
        """Device tensor ``(P, 3)`` -> ``(P,)`` fp32 on the device."""
        out = torch.empty(points.shape[0], dtype=torch.float32, device=self.device)
        for start in range(0, points.shape[0], self.chunk_size):
            chunk = points[start : start + self.chunk_size]
            out[start : start + chunk.shape[0]] = self.vae.query(chunk[None], self.kv)[0].float()
        self.points_evaluated += int(points.shape[0])
        return out

    def __call__(self, points: np.ndarray) -> np.ndarray:
        pts = torch.from_numpy(np.ascontiguousarray(points, np.float32)).to(self.device, non_blocking=True)
        return self.evaluate(pts).cpu().numpy()

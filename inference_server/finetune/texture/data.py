"""A prepared texture set (``prepare_textures``'s output) and the per-sample draws of a step.

As upstream's ``IG2MVSDXLSystem``: fresh posterior samples of the six views' and the
reference's latents every step, one timestep per asset shared by its six views, and three
dropouts: the prompt (-> the empty prompt), the reference (-> zero reference features) and
both together (``cond_drop``). The position/normal maps are never dropped. Every draw comes
from the sample's own generator (``finetune.seeding``), so ranks and resumes draw alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..prepcache import MANIFEST, PrepError, read_manifest
from ..seeding import sample_generator


class TextureSet:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        if not (folder / MANIFEST).is_file():
            raise PrepError(f"{folder} is not a prepared data folder (no {MANIFEST}); run "
                            "'step1x3d finetune texture-prepare' on your textured meshes first")
        manifest = read_manifest(folder)
        self.params: dict[str, Any] = dict(manifest.get("params", {}))
        if self.params.get("kind") != "texture":
            raise PrepError(f"{folder} was not prepared for texture training; run 'step1x3d finetune texture-prepare'")
        from .prepare import FORMAT

        if self.params.get("format") != FORMAT:
            raise PrepError(f"{folder} was prepared by an older version of this tool; run "
                            "'step1x3d finetune texture-prepare' again (the same command: nothing else changes)")
        self.objects: list[dict[str, Any]] = list(manifest["objects"])
        for obj in self.objects:
            if not (folder / obj["file"]).is_file():
                raise PrepError(f"{folder / obj['file']} is missing; run 'step1x3d finetune texture-prepare' again")

    def __len__(self) -> int:
        return len(self.objects)

    @property
    def resolution(self) -> int:
        return int(self.params["resolution"])

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(view moments (6, 2C, h, w), reference moments (1, 2C, h, w), control (6, 6, H, W) float32)."""
        with np.load(self.folder / self.objects[index]["file"]) as data:
            return (np.asarray(data["view_moments"], np.float32), np.asarray(data["ref_moments"], np.float32),
                    np.asarray(data["control"], np.float32))

    def validation_inputs(self, index: int) -> dict[str, np.ndarray]:
        """reference (H, W, 3) uint8, control (6, 6, H, W) float32, and the mesh: positions (N, 3),
        faces (M, 3), uvs (N, 2) as trimesh reads them (v up)."""
        with np.load(self.folder / self.objects[index]["file"]) as data:
            return {"reference": np.asarray(data["reference"]), "control": np.asarray(data["control"], np.float32),
                    "positions": np.asarray(data["positions"]), "faces": np.asarray(data["faces"]),
                    "uvs": np.asarray(data["uvs"])}

    def summary(self) -> dict[str, Any]:
        return {"objects": len(self), "sources": [o["source"] for o in self.objects],
                "resolution": self.params.get("resolution"), "vae": self.params.get("vae")}


@dataclass
class TextureDraw:
    latents: torch.Tensor  # (6, C, h, w) scaled clean latents of the views
    reference: torch.Tensor  # (1, C, h, w) scaled reference latents
    noise: torch.Tensor  # (6, C, h, w)
    timestep: int
    drop_prompt: bool
    drop_reference: bool


def _sample(moments: np.ndarray, g: torch.Generator, scaling: float) -> torch.Tensor:
    m = torch.from_numpy(moments)
    mean, logvar = m.chunk(2, dim=1)
    std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
    return (mean + std * torch.randn(mean.shape, generator=g)) * scaling


def draw_sample(view_moments: np.ndarray, ref_moments: np.ndarray, *, seed: int, step: int, index: int,
                num_timesteps: int, scaling: float, prompt_dropout: float, reference_dropout: float,
                cond_dropout: float, stream: int = 0) -> TextureDraw:
    """Every random choice of sample ``index`` at ``step`` (``stream`` 1: fixed evaluation draws)."""
    g = sample_generator(seed, step, index, stream)
    latents = _sample(view_moments, g, scaling)
    reference = _sample(ref_moments, g, scaling)
    noise = torch.randn(latents.shape, generator=g)
    timestep = int(torch.randint(num_timesteps, (), generator=g).item())
    drop_prompt, drop_ref, drop_both = (bool(torch.rand((), generator=g).item() < p)
                                        for p in (prompt_dropout, reference_dropout, cond_dropout))
    return TextureDraw(latents, reference, noise, timestep, drop_prompt or drop_both, drop_ref or drop_both)

"""Textured test assets and tiny texture-model weights for the texture fine-tuning tests.

Assets are small UV-mapped shapes whose base colour is a two-tone texture image; ``tint``
shifts every texel towards one colour, which is what a style LoRA should learn.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "neural" / "texture"))  # texture_tiny_models

RESOLUTION = 64  # tiny models: 64^2 views, 8^2 latents


def texture_image(seed: int, tint: tuple[float, float, float] | None = None, strength: float = 0.0, size: int = 32):
    from PIL import Image

    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.25, 0.75, 3), rng.uniform(0.25, 0.75, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    check = (((yy // 8) + (xx // 8)) % 2).astype(np.float32)[..., None]
    img = a * check + b * (1 - check)
    if tint is not None:
        img = (1 - strength) * img + strength * np.asarray(tint)
    return Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")


def textured_mesh(kind: int, image):
    import trimesh
    from trimesh.visual import TextureVisuals

    shapes = [lambda: trimesh.creation.icosphere(subdivisions=2, radius=0.6),
              lambda: trimesh.creation.capsule(height=0.8, radius=0.35, count=[12, 12]),
              lambda: trimesh.creation.cylinder(radius=0.4, height=1.0, sections=16),
              lambda: trimesh.creation.cone(radius=0.5, height=1.0, sections=16)]
    mesh = shapes[kind % len(shapes)]()
    v = mesh.vertices / np.abs(mesh.vertices).max()
    uv = np.stack([(np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi)) % 1.0, v[:, 1] * 0.5 + 0.5], axis=1)
    mesh.visual = TextureVisuals(uv=uv, image=image)
    return mesh


def write_assets(folder: Path, count: int = 4, tint: tuple[float, float, float] | None = None,
                 strength: float = 0.0, seed: int = 0) -> Path:
    """``count`` textured assets: GLB files, and one OBJ + MTL + PNG (the second asset)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        mesh = textured_mesh(i, texture_image(seed + i, tint, strength))
        if i == 1:
            mesh.export(folder / f"asset{i}.obj")
        else:
            mesh.export(folder / f"asset{i}.glb")
    return folder


def tiny_weights(root: Path, *, calibrated: bool = False) -> dict:
    """The texture stage's tiny weights, with a VAE that keeps colour in its latents.

    The shared tiny VAE normalises each channel on its own (8 groups over 8 channels), which
    removes a uniform colour shift before the latents: a style of colour could not be learnt
    nor seen. One normalisation group (as the real VAE's groups span many channels) keeps it.

    ``calibrated`` makes two statistics of the random VAE those of the real one, so that colour
    reaches the diffusion model as signal rather than noise: a posterior much narrower than the
    spread of the latents (random init gives log-variance ~0, a posterior std of ~0.9 against
    latents spread over ~0.2; the encoder's log-variance bias is lowered by 8, std x 0.018), and
    a scaling factor that brings the latents to unit variance, as SDXL's 0.13025 does for its VAE
    (measured on the test assets' views: std 0.197 unscaled, so 5.0).
    """
    import torch
    from diffusers import AutoencoderKL
    from texture_tiny_models import build_tiny_weights

    paths = build_tiny_weights(root)
    torch.manual_seed(1)  # test fixture only
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 16, 16),
                        layers_per_block=1, latent_channels=4, norm_num_groups=1, sample_size=RESOLUTION,
                        scaling_factor=5.0 if calibrated else 0.13025, force_upcast=False)
    if calibrated:
        with torch.no_grad():
            vae.quant_conv.bias[4:] -= 8.0  # the log-variance half of the posterior's moments
    vae.save_pretrained(paths["vae_dir"])
    return paths

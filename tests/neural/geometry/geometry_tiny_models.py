"""Tiny random-weight Step1X-3D geometry models, written in the official layout.

Folder names, ``config.json`` contents (upstream's config fields, including ones we ignore),
``diffusion_pytorch_model.safetensors`` and the official key names (e.g. DINOv2's
``attention.attention.query``, whatever the installed transformers calls it) are the release's;
only the sizes are small. The real loader then reads them like a user's download.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from inference_server.neural.geometry.configs import (
    LabelEncoderConfig,
    ShapeVAEConfig,
    TransformerConfig,
    VisualEncoderConfig,
)
from inference_server.neural.geometry.loader import CONFIG_NAME, WEIGHTS_NAME, official_state_dict
from inference_server.neural.geometry.models.condition import ImageConditionEncoder, LabelEncoder, clip_config, dinov2_config
from inference_server.neural.geometry.models.transformer import Step1X3DTransformer
from inference_server.neural.geometry.models.vae import ShapeVAE

WIDTH = 64  # one 64-wide head in the vision towers (their head size is fixed at 64)
DINO_IMAGE = 28  # 2 x 2 patches of 14
CLIP_IMAGE = 28

TINY_VAE = ShapeVAEConfig(use_downsample=True, num_latents=16, point_feats=3, embed_dim=8, num_freqs=8,
                          include_pi=False, width=WIDTH, heads=2, num_encoder_layers=1, num_decoder_layers=1,
                          qkv_bias=False, use_ln_post=True, with_sharp_data=True, z_scale_factor=1.0)


def write_component(folder: Path, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Save one component as the release does: its ``config.json`` and safetensors weights."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / WEIGHTS_NAME))


def tiny_transformer_config(label: bool) -> TransformerConfig:
    return TransformerConfig(input_channels=TINY_VAE.embed_dim, width=32, layers=1, num_single_layers=1, num_heads=2,
                             condition_dim=WIDTH, use_visual_condition=True, visual_condition_dim=WIDTH,
                             use_label_condition=label, label_condition_dim=WIDTH)


def tiny_dino_shapes(label: bool) -> dict[str, tuple[int, ...]]:
    """Enough of a checkpoint header for the encoders' shape-driven configs."""
    shapes: dict[str, tuple[int, ...]] = {
        "dino_model.embeddings.cls_token": (1, 1, WIDTH),
        "dino_model.embeddings.patch_embeddings.projection.weight": (WIDTH, 3, 14, 14),
        "dino_model.embeddings.position_embeddings": (1, (DINO_IMAGE // 14) ** 2 + 1, WIDTH),
        "dino_model.embeddings.register_tokens": (1, 4, WIDTH),
        "dino_model.encoder.layer.0.mlp.fc1.weight": (2 * WIDTH, WIDTH),
    }
    if label:
        shapes.update({
            "clip_model.vision_model.embeddings.class_embedding": (WIDTH,),
            "clip_model.vision_model.embeddings.patch_embedding.weight": (WIDTH, 3, 14, 14),
            "clip_model.vision_model.embeddings.position_embedding.weight": ((CLIP_IMAGE // 14) ** 2 + 1, WIDTH),
            "clip_model.vision_model.encoder.layers.0.mlp.fc1.weight": (2 * WIDTH, WIDTH),
            "clip_model.text_model.embeddings.token_embedding.weight": (40, WIDTH),
            "clip_model.text_model.embeddings.position_embedding.weight": (8, WIDTH),
            "clip_model.text_model.encoder.layers.0.mlp.fc1.weight": (2 * WIDTH, WIDTH),
            "clip_model.visual_projection.weight": (16, WIDTH),
        })
    return shapes


def _config_json(config: Any, **extra: Any) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    out.update(extra)
    return out


def build_tiny_components(label: bool, seed: int = 0) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    vis_cfg = VisualEncoderConfig(image_size=DINO_IMAGE, dino_type="facebook/dinov2-with-registers-large",
                                  clip_type="openai/clip-vit-large-patch14" if label else None)
    modules: dict[str, torch.nn.Module] = {
        "transformer": Step1X3DTransformer(tiny_transformer_config(label)),
        "vae": ShapeVAE(TINY_VAE),
        "visual_encoder": ImageConditionEncoder(vis_cfg, tiny_dino_shapes(label), with_clip=label),
    }
    if label:
        modules["label_encoder"] = LabelEncoder(LabelEncoderConfig(hidden_size=WIDTH))
    # Random weights everywhere (default inits leave norms at 1 and some tokens at 0).
    with torch.no_grad():
        for p in modules["visual_encoder"].parameters():
            p.normal_(0.0, 0.05)
        # Keep the tiny field smooth (a few blobs rather than noise at 2^7 cycles per unit), so
        # the tiny runs give meshes of a sensible size: only x, y, z and the two lowest
        # frequencies reach the decoder. Layout: [xyz, sin(x f0..f7, y.., z..), cos(...)].
        keep = torch.zeros(51, dtype=torch.bool)
        keep[:3] = True
        for block in (3, 27):
            for axis in range(3):
                keep[block + axis * 8 : block + axis * 8 + 2] = True
        dec = modules["vae"].decoder
        dec.query_proj.weight[:, ~keep] = 0.0
        # ... and give it an inside: channel 0 (and -channel 1) carry cos x + cos y + cos z - 2.7,
        # positive within a radius of about 0.77, and the output reads them. The latents still
        # steer the rest of the field through the cross-attention.
        cos_f0 = [27 + axis * 8 for axis in range(3)]
        for channel, sign in ((0, 1.0), (1, -1.0)):
            dec.query_proj.weight[channel] = 0.0
            dec.query_proj.weight[channel, cos_f0] = 4.0 * sign
            dec.query_proj.bias[channel] = -2.7 * 4.0 * sign
        dec.output_proj.weight[0, 0] += 2.0
        dec.output_proj.weight[0, 1] -= 2.0
    return modules


def write_tiny_model(folder: Path, label: bool, seed: int = 0) -> Path:
    """Write one tiny geometry model folder; returns it."""
    modules = build_tiny_components(label, seed)
    vis = modules["visual_encoder"].config  # type: ignore[attr-defined]
    configs = {
        # Upstream's config.json files also hold training-only fields; the loader must ignore them.
        "transformer": _config_json(modules["transformer"].config, identity_init=False),  # type: ignore[attr-defined]
        "vae": _config_json(TINY_VAE, n_samples=32768, init_scale=0.25, use_flash=True, use_checkpoint=False,
                            volume_decoder_type="hierarchical", surface_extractor_type="mc", subfolder=""),
        "visual_encoder": _config_json(vis, camera_embeds_type="sincos", camera_embeds_dim=None,
                                       empty_embeds_ratio=0.1, freeze_modulation_dino=False, kwargs=None),
    }
    if label:
        configs["label_encoder"] = _config_json(modules["label_encoder"].config, empty_embeds_ratio=0.1)  # type: ignore[attr-defined]
    for name, module in modules.items():
        write_component(folder / name, configs[name], official_state_dict(module))
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.32.2",
        "num_train_timesteps": 1000, "shift": 1.0}), encoding="utf-8")
    visual_class = "Dinov2CLIPEncoder" if label else "Dinov2Encoder"
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "Step1X3DGeometryPipeline",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "transformer": ["step1x3d_geometry.models.transformers.flux_transformer_1d", "FluxDenoiser"],
        "vae": ["step1x3d_geometry.models.autoencoders.michelangelo_autoencoder", "MichelangeloAutoencoder"],
        "visual_encoder": ["step1x3d_geometry.models.conditional_encoders", visual_class],
        "label_encoder": ["step1x3d_geometry.models.conditional_encoders.label_encoder", "LabelEncoder"]
        if label else [None, None],
    }), encoding="utf-8")
    return folder


def write_tiny_repo(root: Path) -> Path:
    """Both models under the official subfolder names, like the released repository."""
    write_tiny_model(root / "Step1X-3D-Geometry-1300m", label=False, seed=0)
    write_tiny_model(root / "Step1X-3D-Geometry-Label-1300m", label=True, seed=1)
    return root


__all__ = ["build_tiny_components", "clip_config", "dinov2_config", "write_tiny_model", "write_tiny_repo"]

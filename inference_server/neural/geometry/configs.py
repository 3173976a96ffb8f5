"""The components' ``config.json`` files, read into typed dataclasses.

Upstream writes each component's config dataclass as JSON (minus ``pretrained_*`` and
``weights``). We read the fields that shape the modules and ignore the training-only ones; the
defaults are upstream's dataclass defaults, so a config that omits a field builds what upstream
would build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from ...pipeline.base import PipelineError

C = TypeVar("C")


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Build ``cls`` from the keys it knows; unknown keys are training options we do not need."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in known})


def read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PipelineError(f"missing weights file: {path}", code="weights_missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PipelineError(f"cannot read {path}: {exc}", code="weights_invalid") from exc
    if not isinstance(data, dict):
        raise PipelineError(f"{path} is not a JSON object", code="weights_invalid")
    return data


@dataclass
class TransformerConfig:
    """``transformer/config.json`` (upstream ``FluxDenoiser.Config``)."""

    input_channels: int = 32
    width: int = 768
    layers: int = 12
    num_single_layers: int = 12
    num_heads: int = 16
    condition_dim: int = 1024
    multi_condition_type: str = "in_context"
    use_visual_condition: bool = False
    visual_condition_dim: int = 1024
    n_views: int = 1
    use_caption_condition: bool = False
    caption_condition_dim: int = 1024
    use_label_condition: bool = False
    label_condition_dim: int = 1024


@dataclass
class ShapeVAEConfig:
    """``vae/config.json`` (upstream ``MichelangeloAutoencoder.Config``)."""

    use_downsample: bool = False
    num_latents: int = 256
    point_feats: int = 0
    embed_point_feats: bool = False
    out_dim: int = 1
    embed_dim: int = 64
    embed_type: str = "fourier"
    num_freqs: int = 8
    include_pi: bool = True
    width: int = 768
    heads: int = 12
    num_encoder_layers: int = 8
    num_decoder_layers: int = 16
    qkv_bias: bool = True
    qk_norm: bool = False
    use_ln_post: bool = False
    with_sharp_data: bool = True
    z_scale_factor: float = 1.0


@dataclass
class VisualEncoderConfig:
    """``visual_encoder/config.json`` (upstream ``Dinov2Encoder`` / ``Dinov2CLIPEncoder`` config)."""

    image_size: int = 224
    dino_type: str | None = None
    clip_type: str | None = None
    n_views: int = 1
    encode_camera: bool = False
    zero_uncond_embeds: bool = True
    fuse_type: str = "concat"


@dataclass
class LabelEncoderConfig:
    """``label_encoder/config.json`` (upstream ``LabelEncoder`` config)."""

    hidden_size: int = 1024
    zero_uncond_embeds: bool = True

"""Condition encoders: DINOv2-with-registers (+ CLIP ViT-L/14 for the Label model) and labels.

The vision towers are transformers' own classes, built from configurations assembled locally
(from the checkpoint's tensor shapes when we have them, else from the published presets), so
nothing is ever fetched from the hub. Parameter names are upstream's (``dino_model.*``,
``clip_model.*``, ``embedding_table_*``); where the installed transformers renamed a module
(DINOv2's attention in transformers 5) :meth:`checkpoint_key_renames` maps the official names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..configs import LabelEncoderConfig, VisualEncoderConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_IMAGE_SIZE = 224  # upstream's CLIP input size (its CLIP config's image size)
HEAD_DIM = 64  # every DINOv2 and CLIP ViT size uses 64-wide heads

Shapes = Mapping[str, tuple[int, ...]]

# Published configurations, used when no checkpoint shapes are at hand (meta-device builds).
DINO_PRESETS: dict[str, dict[str, Any]] = {
    "facebook/dinov2-with-registers-large": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4, patch_size=14, image_size=518
    ),
    "facebook/dinov2-with-registers-base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4, patch_size=14, image_size=518
    ),
}
CLIP_PRESETS: dict[str, dict[str, Any]] = {
    "openai/clip-vit-large-patch14": dict(
        text=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                  max_position_embeddings=77, vocab_size=49408),
        vision=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                    image_size=224, patch_size=14),
        projection_dim=768,
    ),
}

# (official name fragment, name fragment in newer transformers)
_DINO_RENAMES = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
)


def _count_layers(shapes: Shapes, pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in shapes if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def dinov2_config(shapes: Shapes | None, dino_type: str | None, prefix: str = "dino_model.") -> Any:
    """A ``Dinov2WithRegistersConfig`` read off the checkpoint's shapes (or a preset)."""
    from transformers import Dinov2WithRegistersConfig

    common = dict(layer_norm_eps=1e-6, layerscale_value=1.0, hidden_act="gelu", qkv_bias=True, num_register_tokens=4)
    if shapes and f"{prefix}embeddings.cls_token" in shapes:
        hidden = shapes[f"{prefix}embeddings.cls_token"][-1]
        patch = shapes[f"{prefix}embeddings.patch_embeddings.projection.weight"][-1]
        positions = shapes[f"{prefix}embeddings.position_embeddings"][1] - 1
        fc1 = shapes.get(f"{prefix}encoder.layer.0.mlp.fc1.weight")
        values: dict[str, Any] = dict(
            hidden_size=hidden,
            num_attention_heads=max(1, hidden // HEAD_DIM),
            num_hidden_layers=_count_layers(shapes, re.escape(prefix) + r"encoder\.layer\.(\d+)\."),
            patch_size=patch,
            image_size=int(round(positions**0.5)) * patch,
            mlp_ratio=(fc1[0] // hidden) if fc1 else 4,
            num_register_tokens=shapes[f"{prefix}embeddings.register_tokens"][1],
        )
        if fc1 is None:  # the giant size's SwiGLU MLP
            values["use_swiglu_ffn"] = True
    else:
        preset = DINO_PRESETS.get(dino_type or "facebook/dinov2-with-registers-large")
        if preset is None:
            raise ValueError(f"unknown DINOv2 type {dino_type!r}; cannot build it without the checkpoint")
        values = dict(preset)
    return Dinov2WithRegistersConfig(**{**common, **values})


def clip_config(shapes: Shapes | None, clip_type: str | None, prefix: str = "clip_model.") -> Any:
    """A ``CLIPConfig`` (text + vision, as upstream holds the whole CLIPModel) from shapes or a preset."""
    from transformers import CLIPConfig

    if shapes and f"{prefix}vision_model.embeddings.class_embedding" in shapes:
        v_hidden = shapes[f"{prefix}vision_model.embeddings.class_embedding"][0]
        v_patch = shapes[f"{prefix}vision_model.embeddings.patch_embedding.weight"][-1]
        v_pos = shapes[f"{prefix}vision_model.embeddings.position_embedding.weight"][0] - 1
        vocab, t_hidden = shapes[f"{prefix}text_model.embeddings.token_embedding.weight"]
        vision: dict[str, Any] = dict(
            hidden_size=v_hidden,
            intermediate_size=shapes[f"{prefix}vision_model.encoder.layers.0.mlp.fc1.weight"][0],
            num_attention_heads=max(1, v_hidden // HEAD_DIM),
            num_hidden_layers=_count_layers(shapes, re.escape(prefix) + r"vision_model\.encoder\.layers\.(\d+)\."),
            image_size=int(round(v_pos**0.5)) * v_patch,
            patch_size=v_patch,
        )
        text: dict[str, Any] = dict(
            hidden_size=t_hidden,
            intermediate_size=shapes[f"{prefix}text_model.encoder.layers.0.mlp.fc1.weight"][0],
            num_attention_heads=max(1, t_hidden // HEAD_DIM),
            num_hidden_layers=_count_layers(shapes, re.escape(prefix) + r"text_model\.encoder\.layers\.(\d+)\."),
            max_position_embeddings=shapes[f"{prefix}text_model.embeddings.position_embedding.weight"][0],
            vocab_size=vocab,
        )
        projection_dim = shapes[f"{prefix}visual_projection.weight"][0]
    else:
        preset = CLIP_PRESETS.get(clip_type or "openai/clip-vit-large-patch14")
        if preset is None:
            raise ValueError(f"unknown CLIP type {clip_type!r}; cannot build it without the checkpoint")
        vision, text, projection_dim = dict(preset["vision"]), dict(preset["text"]), preset["projection_dim"]
    # OpenAI CLIP: quick-GELU, LayerNorm eps 1e-5; token ids only matter to the (unused) text tower.
    vision.update(hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=projection_dim)
    text.update(hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=projection_dim,
                bos_token_id=0, eos_token_id=min(2, text["vocab_size"] - 1), pad_token_id=1)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)


def _pixels(images: Sequence[Image.Image], size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Shortest side to ``size`` (PIL bicubic), centre crop, /255, normalise: the HF processors' steps."""
    out = []
    for img in images:
        img = img.convert("RGB")
        w, h = img.size
        # Shortest side to `size`, the longer one truncated as transformers' resize does.
        nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        img = img.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        out.append(torch.from_numpy(arr.transpose(2, 0, 1).copy()))
    return torch.stack(out)


class ImageConditionEncoder(nn.Module):
    """The ``visual_encoder`` component: DINO tokens, optionally followed by CLIP tokens.

    ``encode(images) -> [B, T, 1024]``: DINO ``last_hidden_state`` without the register tokens
    (CLS + patches), then, for the Label model, CLIP's vision ``last_hidden_state`` (no
    post-LayerNorm). ``unconditional(batch)`` is upstream's empty embedding (zeros).
    """

    def __init__(self, config: VisualEncoderConfig, shapes: Shapes | None = None, with_clip: bool = False) -> None:
        super().__init__()
        from transformers import CLIPModel, Dinov2WithRegistersModel

        if config.encode_camera:
            raise ValueError("camera-conditioned encoders are not part of the released models")
        if config.fuse_type != "concat":
            raise ValueError(f"unknown fuse type {config.fuse_type!r}")
        self.config = config
        dino_cfg = dinov2_config(shapes, config.dino_type)
        dino_cfg._attn_implementation = "sdpa"
        self.dino_model = Dinov2WithRegistersModel(dino_cfg)
        self.with_clip = with_clip
        if with_clip:
            clip_cfg = clip_config(shapes, config.clip_type)
            clip_cfg._attn_implementation = "sdpa"
            self.clip_model = CLIPModel(clip_cfg)
        names = set(self.state_dict())
        self._renames = [(old, new) for old, new in _DINO_RENAMES if not any(old in n for n in names)]

    # Upstream keeps the whole CLIPModel, but only its vision tower conditions the transformer.
    UNUSED_PREFIXES = ("clip_model.text_model.", "clip_model.text_projection.", "clip_model.logit_scale")

    def drop_unused(self) -> None:
        """Remove CLIP's text tower (123M parameters of the ViT-L/14 CLIP, never run).

        The loader checks the file against the whole model first, then calls this before
        reading tensors, so the text weights are never read, cast or moved to the GPU.
        """
        if self.with_clip:
            for name in ("text_model", "text_projection", "logit_scale"):
                if hasattr(self.clip_model, name):
                    delattr(self.clip_model, name)

    # -- checkpoint names -------------------------------------------------------------------
    def checkpoint_key_renames(self) -> list[tuple[str, str]]:
        """(official fragment, this module's fragment) pairs the loader applies to checkpoint keys."""
        return list(self._renames)

    # -- encoding ---------------------------------------------------------------------------
    @property
    def dino_image_size(self) -> int:
        return int(self.config.image_size)

    @property
    def clip_image_size(self) -> int:
        if not self.with_clip:
            return CLIP_IMAGE_SIZE
        vision: Any = self.clip_model.config.vision_config
        return int(vision.image_size)

    def tokens_per_image(self) -> int:
        dino: Any = self.dino_model.config
        n = (self.dino_image_size // int(dino.patch_size)) ** 2 + 1
        if self.with_clip:
            vision: Any = self.clip_model.config.vision_config
            n += (self.clip_image_size // int(vision.patch_size)) ** 2 + 1
        return n

    def pixel_values(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        out = {"dino": _pixels(images, self.dino_image_size, IMAGENET_MEAN, IMAGENET_STD)}
        if self.with_clip:
            out["clip"] = _pixels(images, self.clip_image_size, CLIP_MEAN, CLIP_STD)
        return out

    def encode_pixels(self, pixels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        device, dtype = self.dino_model.embeddings.cls_token.device, self.dino_model.embeddings.cls_token.dtype
        hidden = self.dino_model(pixel_values=pixels["dino"].to(device, dtype)).last_hidden_state
        registers = self.dino_model.config.num_register_tokens
        tokens = torch.cat([hidden[:, :1], hidden[:, registers + 1 :]], dim=1)
        if self.with_clip:
            clip = self.clip_model.vision_model(pixel_values=pixels["clip"].to(device, dtype)).last_hidden_state
            tokens = torch.cat([tokens, clip], dim=1)
        return tokens

    @torch.no_grad()
    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.encode_pixels(self.pixel_values(images))

    @torch.no_grad()
    def unconditional(self, batch: int) -> torch.Tensor:
        """Upstream's empty image embedding: zeros, or (older configs) the encoding of a black image."""
        p = self.dino_model.embeddings.cls_token
        if self.config.zero_uncond_embeds:
            return torch.zeros(batch, self.tokens_per_image(), p.shape[-1], device=p.device, dtype=p.dtype)
        zeros: dict[str, torch.Tensor] = {}
        for key, size, mean, std in (("dino", self.dino_image_size, IMAGENET_MEAN, IMAGENET_STD),
                                     ("clip", self.clip_image_size, CLIP_MEAN, CLIP_STD)):
            if key == "clip" and not self.with_clip:
                continue
            m = torch.tensor(mean).view(1, 3, 1, 1)
            s = torch.tensor(std).view(1, 3, 1, 1)
            zeros[key] = ((torch.zeros(1, 3, size, size) - m) / s).expand(batch, -1, -1, -1)
        return self.encode_pixels(zeros)


# Upstream's label tables: index = class. Names are upstream's label vocabulary.
POSE_CLASSES = ("unknown", "t-pose", "a-pose")
SYMMETRY_CLASSES = ("asymmetry", "x")
GEOMETRY_QUALITY_CLASSES = ("normal", "smooth", "sharp")
_SYMMETRY_ALIASES = {"y": "asymmetry", "z": "asymmetry"}  # upstream maps y/z symmetry to class 0


class LabelEncoder(nn.Module):
    """The ``label_encoder`` component: three label tokens (pose, symmetry, geometry quality).

    ``encode(labels)`` follows upstream's semantics for the keys it reads (a key that is absent
    takes class 0; an empty value gives a zero token) but fixes two upstream bugs: ``pose``
    indexes the pose table (upstream used the symmetry table and the value's first character),
    and ``edge_type`` (upstream's documented key, silently ignored there) sets the geometry
    quality token, as does ``geometry_type``.
    """

    def __init__(self, config: LabelEncoderConfig) -> None:
        super().__init__()
        self.config = config
        extra = 0 if config.zero_uncond_embeds else 1
        self.embedding_table_tpose = nn.Embedding(len(POSE_CLASSES) + extra, config.hidden_size)
        self.embedding_table_symmetry_type = nn.Embedding(len(SYMMETRY_CLASSES) + extra, config.hidden_size)
        self.embedding_table_geometry_quality = nn.Embedding(len(GEOMETRY_QUALITY_CLASSES) + extra, config.hidden_size)

    def _token(self, table: nn.Embedding, classes: tuple[str, ...], value: Any, key: str) -> torch.Tensor:
        w = table.weight
        if value is None or value == "":
            return torch.zeros(w.shape[-1], device=w.device, dtype=w.dtype)
        if value not in classes:
            raise ValueError(f"label {key}={value!r} is not one of {', '.join(classes)}")
        return w[classes.index(value)]

    def encode(self, labels: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        rows = []
        for label in labels:
            pose = label.get("pose", POSE_CLASSES[0])
            symmetry = label.get("symmetry", SYMMETRY_CLASSES[0])
            symmetry = _SYMMETRY_ALIASES.get(symmetry, symmetry) if isinstance(symmetry, str) else symmetry
            quality = label.get("edge_type", label.get("geometry_type", GEOMETRY_QUALITY_CLASSES[0]))
            rows.append(torch.stack([
                self._token(self.embedding_table_tpose, POSE_CLASSES, pose, "pose"),
                self._token(self.embedding_table_symmetry_type, SYMMETRY_CLASSES, symmetry, "symmetry"),
                self._token(self.embedding_table_geometry_quality, GEOMETRY_QUALITY_CLASSES, quality, "edge_type"),
            ]))
        return torch.stack(rows)

    def unconditional(self, batch: int) -> torch.Tensor:
        """Upstream's empty label embedding (zeros; older configs: the default symmetry token in the middle)."""
        w = self.embedding_table_tpose.weight
        out = torch.zeros(batch, 3, w.shape[-1], device=w.device, dtype=w.dtype)
        if not self.config.zero_uncond_embeds:
            out[:, 1] = self.embedding_table_symmetry_type.weight[0]
        return out

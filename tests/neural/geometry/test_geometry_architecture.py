"""Full-size architectures on the meta device: parameter counts and official names.

The published counts (from building upstream's modules) pin the architecture: a missing bias,
a wrong MLP ratio or a misplaced norm changes them.
"""

from __future__ import annotations

import torch

from inference_server.neural.geometry.configs import ShapeVAEConfig, TransformerConfig, VisualEncoderConfig
from inference_server.neural.geometry.loader import official_state_dict
from inference_server.neural.geometry.models.condition import ImageConditionEncoder
from inference_server.neural.geometry.models.transformer import Step1X3DTransformer
from inference_server.neural.geometry.models.vae import ShapeVAE

BASE = TransformerConfig(input_channels=64, width=1280, layers=12, num_single_layers=24, num_heads=20,
                         use_visual_condition=True, visual_condition_dim=1024)
LABEL = TransformerConfig(input_channels=64, width=1536, layers=8, num_single_layers=16, num_heads=16,
                          use_visual_condition=True, visual_condition_dim=1024, use_label_condition=True,
                          label_condition_dim=1024)
VAE = ShapeVAEConfig(use_downsample=True, num_latents=2048, embed_dim=64, point_feats=3, out_dim=1, num_freqs=8,
                     include_pi=False, heads=12, width=768, num_encoder_layers=8, num_decoder_layers=16,
                     use_ln_post=True, qkv_bias=False)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_base_transformer_parameter_count() -> None:
    with torch.device("meta"):
        assert count(Step1X3DTransformer(BASE)) == 1_316_287_808


def test_label_transformer_parameter_count() -> None:
    with torch.device("meta"):
        assert count(Step1X3DTransformer(LABEL)) == 1_271_729_728


def test_vae_parameter_count() -> None:
    with torch.device("meta"):
        assert count(ShapeVAE(VAE)) == 191_591_553


def test_transformer_official_names_and_shapes() -> None:
    with torch.device("meta"):
        state = Step1X3DTransformer(BASE).state_dict()
    w = 1280
    expected = {
        "dit_model.time_proj.linear_1.weight": (4 * w, w),
        "dit_model.time_proj.linear_2.weight": (w, 4 * w),
        "dit_model.proj_in.weight": (w, 64),
        "dit_model.proj_cross_attention.weight": (w, 1024),
        "dit_model.transformer_blocks.11.norm1_context.linear.weight": (6 * w, w),
        "dit_model.transformer_blocks.0.attn.norm_added_k.weight": (64,),
        "dit_model.transformer_blocks.0.attn.to_out.0.weight": (w, w),
        "dit_model.transformer_blocks.0.ff_context.net.2.weight": (w, 4 * w),
        "dit_model.single_transformer_blocks.23.norm.linear.weight": (3 * w, w),
        "dit_model.single_transformer_blocks.23.proj_mlp.weight": (4 * w, w),
        "dit_model.single_transformer_blocks.23.proj_out.weight": (w, 5 * w),
        "dit_model.norm_out.linear.weight": (2 * w, w),
        "dit_model.proj_out.weight": (64, w),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert not any("single_transformer_blocks.0.attn.to_out" in k for k in state)  # single blocks: pre-only


def test_vae_official_names() -> None:
    with torch.device("meta"):
        state = ShapeVAE(VAE).state_dict()
    assert tuple(state["decoder.query_proj.weight"].shape) == (768, 51)
    assert tuple(state["transformer.resblocks.15.attn.c_qkv.weight"].shape) == (3 * 768, 768)
    assert "transformer.resblocks.15.attn.c_qkv.bias" not in state  # q/k/v without bias
    assert "transformer.resblocks.15.attn.c_proj.bias" in state
    assert tuple(state["decoder.cross_attn_decoder.attn.c_kv.weight"].shape) == (2 * 768, 768)
    assert tuple(state["post_kl.weight"].shape) == (768, 64)
    assert "frequencies" not in " ".join(state)  # the Fourier frequencies are not in the checkpoint


def test_label_visual_encoder_official_names_and_tokens() -> None:
    """DINOv2-L/14-reg at 518 + CLIP ViT-L/14, from local presets: no hub access, official keys."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        enc = ImageConditionEncoder(VisualEncoderConfig(image_size=518), None, with_clip=True)
    names = official_state_dict(enc)
    for key in ("dino_model.embeddings.register_tokens", "dino_model.embeddings.mask_token",
                "dino_model.encoder.layer.23.attention.attention.query.weight",
                "dino_model.encoder.layer.23.attention.output.dense.weight",
                "dino_model.encoder.layer.23.layer_scale2.lambda1", "dino_model.layernorm.weight",
                "clip_model.vision_model.encoder.layers.23.self_attn.q_proj.weight",
                "clip_model.text_model.final_layer_norm.weight", "clip_model.logit_scale"):
        assert key in names, key
    assert tuple(names["dino_model.embeddings.position_embeddings"].shape) == (1, 1370, 1024)
    # 1 CLS + 37 x 37 patches (registers dropped), then CLIP's 1 + 16 x 16.
    assert enc.tokens_per_image() == 1370 + 257

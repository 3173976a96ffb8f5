"""The published structures of the full-size models, for building them with random weights.

One place for the benchmarks (``geometry.py``, ``texture.py``, ``memory_estimate.py``) and the
tests that build full-size models on the meta device: the shapes here are what the official
``config.json`` files say (the parameter-count tests pin them to the published counts).
"""

from __future__ import annotations

from typing import Any

# Step1X-3D flow transformers (Step1X-3D-Geometry-1300m / -Label-1300m).
GEOMETRY_TRANSFORMERS: dict[str, dict[str, Any]] = {
    "base": {"input_channels": 64, "width": 1280, "layers": 12, "num_single_layers": 24, "num_heads": 20,
             "use_visual_condition": True, "visual_condition_dim": 1024},
    "label": {"input_channels": 64, "width": 1536, "layers": 8, "num_single_layers": 16, "num_heads": 16,
              "use_visual_condition": True, "visual_condition_dim": 1024, "use_label_condition": True,
              "label_condition_dim": 1024},
}
# Step1X-3D shape VAE (both geometry models share it).
GEOMETRY_VAE: dict[str, Any] = {
    "use_downsample": True, "num_latents": 2048, "embed_dim": 64, "point_feats": 3, "out_dim": 1, "num_freqs": 8,
    "include_pi": False, "heads": 12, "width": 768, "num_encoder_layers": 8, "num_decoder_layers": 16,
    "use_ln_post": True, "qkv_bias": False,
}
SDXL_UNET: dict[str, Any] = {  # stable-diffusion-xl-base-1.0/unet/config.json (structure)
    "sample_size": 128, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10], "attention_head_dim": [5, 10, 20], "cross_attention_dim": 2048,
    "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SDXL_VAE: dict[str, Any] = {  # sdxl-vae-fp16-fix/config.json (structure)
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": False,
}
SDXL_SCHEDULER: dict[str, Any] = {  # stable-diffusion-xl-base-1.0/scheduler/scheduler_config.json
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "leading", "clip_sample": False,
    "set_alpha_to_one": False,
}
SDXL_TEXT_ENCODERS: dict[str, dict[str, Any]] = {  # CLIP ViT-L/14 text, OpenCLIP ViT-bigG/14 text (+ projection)
    "text_encoder": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                     "num_hidden_layers": 12, "max_position_embeddings": 77, "vocab_size": 49408,
                     "projection_dim": 768},
    "text_encoder_2": {"hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20,
                       "num_hidden_layers": 32, "max_position_embeddings": 77, "vocab_size": 49408,
                       "projection_dim": 1280},
}

__all__ = ["GEOMETRY_TRANSFORMERS", "GEOMETRY_VAE", "SDXL_SCHEDULER", "SDXL_TEXT_ENCODERS", "SDXL_UNET", "SDXL_VAE"]

"""Tiny SDXL-shaped models with random weights, saved the way users' downloads are laid out.

``build_tiny_weights(root)`` writes:
  root/sdxl/{unet,text_encoder,text_encoder_2,tokenizer,tokenizer_2,scheduler}/  (diffusers layout)
  root/vae/                                                                      (fp16-fix VAE stand-in)
  root/Step1X-3D-Texture/step1x-3d-ig2v.safetensors                              (official key layout)
The structure is SDXL's (three down blocks, text_time conditioning, two CLIP encoders whose hidden
states are concatenated); only the widths are small. Views are 64x64 (latents 8x8).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from inference_server.neural.texture.models import build_geometry_adapter, install_mv_processors

RESOLUTION = 64
TEXT_WIDTH = 32

# SDXL base's scheduler_config.json (an Euler config; the texture stage reads the keys DDPM knows).
SDXL_SCHEDULER_CONFIG = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}


def tiny_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=RESOLUTION // 8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        transformer_layers_per_block=(1, 1, 2),
        attention_head_dim=(2, 4, 4),  # diffusers' SDXL quirk: these are head counts
        cross_attention_dim=2 * TEXT_WIDTH,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + TEXT_WIDTH,
        norm_num_groups=8,
    )


def tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=RESOLUTION,
        scaling_factor=0.13025,
        force_upcast=False,
    )


def _write_tokenizer(folder: Path) -> int:
    """A character-level CLIP BPE vocabulary (no merges): enough to tokenise any lower-case prompt."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + ",.!-'")
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 77, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer",
    }))
    return len(vocab)


def _text_config(vocab_size: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_WIDTH, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=TEXT_WIDTH,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )


def official_adapter_state(unet: UNet2DConditionModel, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random MV-Adapter + geometry-adapter weights under the official keys for this UNet."""
    torch.manual_seed(seed)  # test fixture only: the weights just have to be fixed and non-trivial
    install_mv_processors(unet)
    state = {k: v.detach().clone() for k, v in unet.state_dict().items() if ".processor." in k}
    adapter = build_geometry_adapter(unet.config)
    state.update({k: v.detach().clone() for k, v in adapter.state_dict().items()})
    return state


def build_tiny_weights(root: Path, seed: int = 0) -> dict[str, Path]:
    torch.manual_seed(seed)  # test fixture only
    sdxl = root / "sdxl"
    unet = tiny_unet()
    unet.save_pretrained(sdxl / "unet")
    vocab_size = _write_tokenizer(sdxl / "tokenizer")
    _write_tokenizer(sdxl / "tokenizer_2")
    CLIPTextModel(_text_config(vocab_size)).save_pretrained(sdxl / "text_encoder")
    CLIPTextModelWithProjection(_text_config(vocab_size)).save_pretrained(sdxl / "text_encoder_2")
    (sdxl / "scheduler").mkdir(parents=True, exist_ok=True)
    (sdxl / "scheduler" / "scheduler_config.json").write_text(json.dumps(SDXL_SCHEDULER_CONFIG))
    vae = root / "vae"
    tiny_vae().save_pretrained(vae)
    adapter_dir = root / "Step1X-3D-Texture"
    adapter_dir.mkdir(parents=True, exist_ok=True)
    adapter_file = adapter_dir / "step1x-3d-ig2v.safetensors"
    save_file({k: v.contiguous() for k, v in official_adapter_state(tiny_unet()).items()}, str(adapter_file))
    return {"sdxl_dir": sdxl, "vae_dir": vae, "adapter_file": adapter_file, "root": root}

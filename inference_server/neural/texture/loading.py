"""Loading the texture model from local folders: SDXL base, the fp16-fix VAE, the ig2v adapter file.

Nothing here touches the network: every ``from_pretrained`` gets a local folder and
``local_files_only=True``, and missing pieces raise :class:`PipelineError` (``weights_missing``)
naming the folder or file the artist has to fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, T2IAdapter, UNet2DConditionModel
from safetensors import safe_open
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from ...pipeline.base import PipelineError
from .models import build_geometry_adapter, install_mv_processors
from .scheduler import make_shifted_ddpm

SDXL_PARTS = ("unet", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "model.safetensors",
                "pytorch_model.bin", "diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json")
ADAPTER_KEY_PREFIX = "adapter."  # T2IAdapter's state dict prefix in the official file


@dataclass
class TextureModels:
    """Everything the multi-view diffusion needs, loaded and wired (on the CPU until placed)."""

    unet: UNet2DConditionModel  # with the MV-Adapter processors installed and loaded
    cond_encoder: T2IAdapter  # geometry adapter
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    text_encoder_2: CLIPTextModelWithProjection
    tokenizer: CLIPTokenizer
    tokenizer_2: CLIPTokenizer
    scheduler: DDPMScheduler


def _missing(message: str) -> PipelineError:
    return PipelineError(message, code="weights_missing")


def _has_weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in WEIGHT_NAMES) or any(folder.glob("*.safetensors"))


def check_sdxl_dir(sdxl_dir: Path) -> None:
    if not str(sdxl_dir) or not sdxl_dir.is_dir():
        raise _missing(f"SDXL base folder not found: '{sdxl_dir}'. Download stable-diffusion-xl-base-1.0 "
                       "(diffusers layout) and set its folder in the server settings.")
    for part in SDXL_PARTS:
        folder = sdxl_dir / part
        if not folder.is_dir():
            raise _missing(f"SDXL base folder '{sdxl_dir}' has no '{part}/' subfolder: is it the diffusers layout?")
        if part.startswith("tokenizer"):
            if not (folder / "vocab.json").is_file() and not (folder / "tokenizer.json").is_file():
                raise _missing(f"'{folder}' has no tokenizer files (vocab.json/merges.txt or tokenizer.json).")
            continue
        config = folder / ("scheduler_config.json" if part == "scheduler" else "config.json")
        if not config.is_file():
            raise _missing(f"'{folder}' has no {config.name}.")
        if part != "scheduler" and not _has_weights(folder):
            raise _missing(f"'{folder}' has no weight file (.safetensors or .bin).")


def resolve_vae_dir(vae_dir: Path) -> Path:
    """The fp16-fix VAE folder; accepts the folder itself or a parent holding ``vae/``."""
    if not str(vae_dir) or not vae_dir.is_dir():
        raise _missing(f"SDXL VAE folder not found: '{vae_dir}'. Download sdxl-vae-fp16-fix (diffusers layout) "
                       "and set its folder in the server settings.")
    for folder in (vae_dir, vae_dir / "vae"):
        if (folder / "config.json").is_file() and _has_weights(folder):
            return folder
    raise _missing(f"'{vae_dir}' holds no VAE (config.json plus diffusion_pytorch_model.safetensors).")


def _variant(folder: Path, dtype: torch.dtype, name: str = "diffusion_pytorch_model") -> str | None:
    # SDXL base ships fp16 copies next to the fp32 weights: half the reading when we run in half
    # precision, and the only copy in a folder `step1x3d weights fetch` wrote (cast on load).
    if not (folder / f"{name}.fp16.safetensors").is_file():
        return None
    if dtype == torch.float16 or not (folder / f"{name}.safetensors").is_file():
        return "fp16"
    return None


def read_adapter_file(adapter_file: Path) -> dict[str, torch.Tensor]:
    if not adapter_file.is_file():
        raise _missing(f"Step1X-3D texture adapter not found: '{adapter_file}' "
                       "(expected Step1X-3D-Texture/step1x-3d-ig2v.safetensors).")
    try:
        with safe_open(str(adapter_file), framework="pt", device="cpu") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises several types for truncated or foreign files
        raise PipelineError(f"cannot read the texture adapter '{adapter_file}': {exc}", code="weights_missing") from exc


def _describe(keys: set[str], limit: int = 5) -> str:
    shown = sorted(keys)[:limit]
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(shown) + more


def load_adapter_state(
    state: dict[str, torch.Tensor], unet: UNet2DConditionModel, cond_encoder: T2IAdapter, dtype: torch.dtype
) -> None:
    """Load the official ig2v state dict strictly: every key used, none missing, shapes equal.

    UNet keys are the processors' (``<layer>.attn1.processor.to_q_mv.weight`` ...), geometry
    adapter keys start with ``adapter.``. The processors may sit on the meta device: their
    tensors are assigned, not copied.
    """
    unet_expected = {k: v for k, v in unet.state_dict(keep_vars=True).items() if ".processor." in k}
    adapter_expected = cond_encoder.state_dict(keep_vars=True)
    expected = set(unet_expected) | set(adapter_expected)
    found = set(state)
    missing, unexpected = expected - found, found - expected
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_describe(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_describe(unexpected)})")
        raise PipelineError("the texture adapter file does not match this model: " + "; ".join(parts)
                            + ". Is it step1x-3d-ig2v.safetensors for SDXL?", code="weights_missing")
    for key, tensor in state.items():
        want = unet_expected[key] if key in unet_expected else adapter_expected[key]
        if tuple(want.shape) != tuple(tensor.shape):
            raise PipelineError(f"texture adapter tensor {key} has shape {tuple(tensor.shape)}, the model needs "
                                f"{tuple(want.shape)}", code="weights_missing")
    unet.load_state_dict({k: state[k].to(dtype) for k in unet_expected}, strict=False, assign=True)
    cond_encoder.load_state_dict({k: state[k].to(dtype) for k in adapter_expected}, strict=True, assign=True)


def load_models(adapter_file: Path, sdxl_dir: Path, vae_dir: Path, dtype: torch.dtype) -> TextureModels:
    """Read SDXL base, the VAE and the adapter file from local folders (on the CPU, in ``dtype``)."""
    check_sdxl_dir(sdxl_dir)
    vae_folder = resolve_vae_dir(vae_dir)
    if not adapter_file.is_file():
        read_adapter_file(adapter_file)  # raises the clear error before the slow loads
    local: dict[str, Any] = {"local_files_only": True}
    try:
        unet = UNet2DConditionModel.from_pretrained(
            sdxl_dir, subfolder="unet", torch_dtype=dtype, variant=_variant(sdxl_dir / "unet", dtype), **local
        )
        vae = AutoencoderKL.from_pretrained(vae_folder, torch_dtype=dtype, **local)
        text_encoder = CLIPTextModel.from_pretrained(
            sdxl_dir / "text_encoder", dtype=dtype, variant=_variant(sdxl_dir / "text_encoder", dtype, "model"), **local
        )
        text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(
            sdxl_dir / "text_encoder_2", dtype=dtype, variant=_variant(sdxl_dir / "text_encoder_2", dtype, "model"),
            **local,
        )
        tokenizer = CLIPTokenizer.from_pretrained(sdxl_dir / "tokenizer", **local)
        tokenizer_2 = CLIPTokenizer.from_pretrained(sdxl_dir / "tokenizer_2", **local)
        scheduler_config = json.loads((sdxl_dir / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise PipelineError(f"cannot load SDXL from '{sdxl_dir}' / '{vae_folder}': {exc}", code="weights_missing") from exc

    # The processors and the geometry adapter are created without initialisation (meta device)
    # and receive the file's tensors directly: ~0.9 B parameters never get a random init.
    install_mv_processors(unet, device="meta", dtype=dtype)
    with torch.device("meta"):
        cond_encoder = build_geometry_adapter(unet.config)
    load_adapter_state(read_adapter_file(adapter_file), unet, cond_encoder, dtype)
    for model in (unet, vae, text_encoder, text_encoder_2, cond_encoder):
        model.eval().requires_grad_(False)
    return TextureModels(
        unet=unet,
        cond_encoder=cond_encoder,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler=make_shifted_ddpm(scheduler_config),
    )


__all__ = ["TextureModels", "check_sdxl_dir", "load_adapter_state", "load_models", "read_adapter_file", "resolve_vae_dir"]

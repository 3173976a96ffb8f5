"""What the texture stage needs from the server: weight locations and run-time choices.

The server settings name four local paths (never hub ids):

* ``adapter_file``: ``Step1X-3D-Texture/step1x-3d-ig2v.safetensors`` (MV-Adapter + geometry adapter).
* ``sdxl_dir``: Stable Diffusion XL base 1.0 in the diffusers layout (``unet/``, ``text_encoder/``,
  ``text_encoder_2/``, ``tokenizer/``, ``tokenizer_2/``, ``scheduler/``; its ``vae/`` is not used).
* ``vae_dir``: the fp16-fix SDXL VAE (``config.json`` + weights; a folder with a ``vae/`` inside works too).
* ``lora_dir`` (optional): a folder of style LoRAs for the SDXL UNet; a job's ``lora`` setting names a
  ``.safetensors`` file in it (with or without the extension).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

# Upstream's fixed text conditioning: the model was trained with captions but is run with these.
PROMPT = "high quality"
NEGATIVE_PROMPT = "watermark, ugly, deformed, noisy, blurry, low contrast"
RESOLUTION = 768  # per-view resolution the model was trained at
MAX_TEXTURE_SIZE = 4096

DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float32": torch.float32, "fp32": torch.float32}
OFFLOAD_MODES = ("auto", "none", "stages")

# Environment variables read by :meth:`TextureConfig.from_env` and by the upstream-style API.
ENV_SDXL = "STEP1X3D_SDXL_DIR"
ENV_VAE = "STEP1X3D_SDXL_VAE_DIR"
ENV_LORA = "STEP1X3D_LORA_DIR"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class TextureConfig:
    adapter_file: Path
    sdxl_dir: Path
    vae_dir: Path
    lora_dir: Path | None = None
    device: str = field(default_factory=default_device)
    dtype: str = "auto"  # auto: bfloat16 on GPUs that have it, else float16; float32 on the CPU
    # auto: keep everything resident on cards with 40 GB or more, else "stages": only the models
    # of the running sub-stage (VAE / UNet + adapters) stay on the GPU.
    offload: str = "auto"
    resolution: int = RESOLUTION
    bake_resolution: int = 2048  # views are upsampled to this before back-projection (upstream: 2048)
    mv_scale: float = 1.0
    reference_scale: float = 1.0
    control_scale: float = 1.0
    # Upstream's latent texture synchronisation (see sync.py): the fraction of the denoising
    # (by timestep) during which the six views are denoised as one latent UV texture of
    # texture_sync_size^2. 0 = off. Upstream runs 0.5; off here by default because its
    # quality gain could not be measured (docs/texture.md, benchmarks/texture_sync.py).
    texture_sync_ratio: float = 0.0
    texture_sync_size: int = 1536
    # "ours" (crop to alpha >= 128, one pixel of margin all round, rounded compositing) or
    # "upstream" (its exact preprocessing: crop to alpha > 0, see conditioning.prepare_reference_upstream).
    reference_preprocessing: str = "ours"

    def __post_init__(self) -> None:
        self.adapter_file = Path(self.adapter_file)
        self.sdxl_dir = Path(self.sdxl_dir)
        self.vae_dir = Path(self.vae_dir)
        self.lora_dir = Path(self.lora_dir) if self.lora_dir else None
        if self.offload not in OFFLOAD_MODES:
            raise ValueError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {self.offload!r}")
        if self.resolution % 64:
            raise ValueError("resolution must be a multiple of 64")
        if self.reference_preprocessing not in ("ours", "upstream"):
            raise ValueError(f"reference_preprocessing must be ours or upstream, not {self.reference_preprocessing!r}")
        from .sync import SyncSettings

        # Validates the ratio (0..1, a clear error otherwise) and the latent texture size.
        SyncSettings(ratio=self.texture_sync_ratio, texture_size=self.texture_sync_size)
        self.texture_sync_ratio = float(self.texture_sync_ratio)

    @property
    def torch_dtype(self) -> torch.dtype:
        if self.dtype != "auto":
            try:
                return DTYPES[self.dtype]
            except KeyError:
                raise ValueError(f"unknown dtype {self.dtype!r}; use one of {', '.join(DTYPES)}") from None
        if not str(self.device).startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    @classmethod
    def from_env(cls, adapter_file: str | os.PathLike[str], **overrides: object) -> "TextureConfig":
        """Paths of the SDXL folders from ``STEP1X3D_SDXL_DIR`` / ``STEP1X3D_SDXL_VAE_DIR`` (and the
        optional ``STEP1X3D_LORA_DIR``) unless given in ``overrides``."""
        values: dict[str, object] = {
            "sdxl_dir": os.environ.get(ENV_SDXL, ""),
            "vae_dir": os.environ.get(ENV_VAE, ""),
            "lora_dir": os.environ.get(ENV_LORA) or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(adapter_file=Path(adapter_file), **values)  # type: ignore[arg-type]


__all__ = ["MAX_TEXTURE_SIZE", "NEGATIVE_PROMPT", "PROMPT", "RESOLUTION", "TextureConfig"]

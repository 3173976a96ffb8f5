"""The LoRA file: safetensors in the PEFT/diffusers layout, with metadata.

Keys are ``<component>.<module path>.lora_A.weight`` / ``.lora_B.weight`` (diffusers' layout,
e.g. ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``), so diffusers-style loaders
and ours read it. Metadata (strings, as safetensors requires): ``lora_adapter_metadata`` (the
PEFT ``LoraConfig`` fields diffusers reads: ``r``, ``lora_alpha``, ``target_modules``) and
``step1x3d`` (a JSON object: base model, rank, alpha, steps, data summary, config).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

META_KEY = "step1x3d"
PEFT_META_KEY = "lora_adapter_metadata"


def save_lora(path: Path, component: str, state: dict[str, torch.Tensor], *, rank: int, alpha: float,
              target_modules: list[str], info: dict[str, Any]) -> Path:
    """Write ``state`` (PEFT keys without the adapter name) under ``component.``, atomically."""
    from safetensors.torch import save_file

    tensors = {f"{component}.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    metadata = {
        "format": "pt",
        PEFT_META_KEY: json.dumps({"r": rank, "lora_alpha": alpha, "target_modules": sorted(target_modules),
                                   "init_lora_weights": "gaussian", "bias": "none"}),
        META_KEY: json.dumps(dict(info, rank=rank, alpha=alpha), default=str),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``step1x3d`` metadata block (empty for LoRAs made elsewhere)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    out: dict[str, Any] = {}
    for key in (META_KEY, PEFT_META_KEY):
        if key in meta:
            try:
                out[key] = json.loads(meta[key])
            except ValueError:
                out[key] = meta[key]
    return out

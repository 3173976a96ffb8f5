"""PEFT LoRA layers on a frozen model, the same way for every trainer: inject, read, restore.

Gaussian initialisation (B = 0, so the untrained LoRA is the base model); the LoRA weights are
trainable and kept in fp32 even over a bf16 base.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .config import ConfigError, TrainConfig


def inject_lora(module: nn.Module, targets: Sequence[str], cfg: TrainConfig, what: str) -> list[str]:
    """LoRA (``cfg.rank``, ``cfg.lora_alpha``) on the layers of ``module`` named by ``targets``; returns them.
    ``what`` names the model in the refusal when no layer matches."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ConfigError("fine-tuning needs peft: pip install '.[train]'") from None
    names = list(targets)
    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.lora_alpha,  # type: ignore[arg-type]  # peft accepts floats
                        init_lora_weights="gaussian", target_modules=names)
    try:
        inject_adapter_in_model(config, module)
    except ValueError as exc:
        raise ConfigError(f"LoRA targets {names} match no layer of the {what} ({exc})") from exc
    for name, p in module.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
            p.requires_grad_(True)
    return names


def lora_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the LoRA weights of ``module`` (PEFT's key layout)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(module).items()}


def load_lora_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put a checkpoint's LoRA weights back; a LoRA of other targets or rank is refused."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(module, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ConfigError(f"the checkpoint's LoRA does not fit this model (other targets or rank; e.g. {unexpected[0]})")


__all__ = ["inject_lora", "load_lora_state", "lora_state"]

"""Style LoRAs for the SDXL UNet, merged into the weights for one job and removed after.

Merging (W += scale * alpha / rank * up @ down) costs nothing per step, needs no extra
package, and leaves the MV-Adapter branches untouched: they were trained on the base UNet's
features and a style LoRA only shifts those. The touched weights are copied to the CPU first
and written back afterwards, so repeated jobs never accumulate rounding error.

Key layouts read (``.safetensors`` only: pickled files can run code):
* PEFT / diffusers: ``unet.<module>.lora_A.weight`` + ``lora_B.weight`` (``unet.`` prefix optional);
* older diffusers: ``unet.<module>.lora.down.weight`` + ``lora.up.weight``, and attention-processor
  style ``<...>.processor.to_q_lora.down.weight``;
* kohya with diffusers module names: ``lora_unet_<module_with_underscores>.lora_down.weight`` + ``lora_up.weight``,
  with an optional ``.alpha``.
Text-encoder parts are skipped (the prompts are fixed and cached), and reported in the notes.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file
from torch import nn

from ...pipeline.base import PipelineError

TEXT_ENCODER_PREFIXES = ("text_encoder", "te_", "lora_te")


@dataclass
class LoraPair:
    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None = None


@dataclass
class LoraInfo:
    applied: int = 0
    skipped_text_encoder: int = 0
    notes: list[str] = field(default_factory=list)


def resolve_lora_file(lora_dir: Path | None, name: str) -> Path:
    """The file a job's ``lora`` setting names inside the server's LoRA folder (no path escapes)."""
    if lora_dir is None:
        raise PipelineError("this server has no LoRA folder configured; clear the LoRA setting", code="bad_settings")
    if Path(name).name != name or name.startswith("."):
        raise PipelineError(f"LoRA name {name!r} must be a plain file name", code="bad_settings")
    for candidate in (lora_dir / name, lora_dir / f"{name}.safetensors"):
        if candidate.is_file() and candidate.suffix == ".safetensors":
            return candidate
    raise PipelineError(f"LoRA {name!r} not found in {lora_dir} (only .safetensors files are loaded)", code="weights_missing")


def _kohya_index(unet: nn.Module) -> dict[str, str]:
    return {name.replace(".", "_"): name for name, _ in unet.named_modules() if name}


def parse_lora(state: dict[str, torch.Tensor], unet: nn.Module) -> tuple[dict[str, LoraPair], int]:
    """Module name -> (down, up, alpha) for the UNet; also the number of text-encoder pairs skipped."""
    downs: dict[str, torch.Tensor] = {}
    ups: dict[str, torch.Tensor] = {}
    alphas: dict[str, float] = {}
    skipped = 0
    kohya = _kohya_index(unet)
    patterns = (
        (re.compile(r"^(?:unet\.)?(.+)\.lora_A(?:\.default)?\.weight$"), "down"),
        (re.compile(r"^(?:unet\.)?(.+)\.lora_B(?:\.default)?\.weight$"), "up"),
        (re.compile(r"^(?:unet\.)?(.+)\.lora\.down\.weight$"), "down"),
        (re.compile(r"^(?:unet\.)?(.+)\.lora\.up\.weight$"), "up"),
        (re.compile(r"^(?:unet\.)?(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.down\.weight$"), "proc_down"),
        (re.compile(r"^(?:unet\.)?(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.up\.weight$"), "proc_up"),
        (re.compile(r"^lora_unet_(.+)\.lora_down\.weight$"), "kohya_down"),
        (re.compile(r"^lora_unet_(.+)\.lora_up\.weight$"), "kohya_up"),
    )
    for key, tensor in state.items():
        if key.startswith(TEXT_ENCODER_PREFIXES):
            skipped += key.endswith(("lora_A.weight", "lora.down.weight", "lora_down.weight"))
            continue
        if key.endswith(".alpha"):
            base = key[: -len(".alpha")].removeprefix("unet.")
            if base.startswith("lora_unet_"):
                base = kohya.get(base[len("lora_unet_"):], base)
            alphas[base] = float(tensor.item())
            continue
        for pattern, kind in patterns:
            match = pattern.match(key)
            if not match:
                continue
            if kind.startswith("proc"):
                module = f"{match.group(1)}.{match.group(2)}" + (".0" if match.group(2) == "to_out" else "")
            elif kind.startswith("kohya"):
                flat = match.group(1)
                if flat not in kohya:
                    raise PipelineError(
                        f"LoRA key {key} names no module of the SDXL UNet (SGM-style block names are not "
                        "supported; convert the LoRA to the diffusers layout)", code="not_implemented")
                module = kohya[flat]
            else:
                module = match.group(1)
            (downs if kind.endswith("down") else ups)[module] = tensor
            break
        else:
            raise PipelineError(f"unrecognised LoRA key {key}", code="bad_settings")
    if set(downs) != set(ups):
        raise PipelineError("the LoRA file has unpaired down/up weights", code="bad_settings")
    return {m: LoraPair(downs[m], ups[m], alphas.get(m)) for m in downs}, skipped


def _delta(pair: LoraPair, weight: torch.Tensor) -> torch.Tensor:
    down, up = pair.down.float(), pair.up.float()
    rank = down.shape[0]
    product = up.flatten(1) @ down.flatten(1)
    if weight.ndim == 4 and down.ndim == 4 and down.shape[-1] > 1:
        # Conv LoRA with a spatial down kernel: up is 1x1, so the product keeps down's kernel.
        product = torch.einsum("or,rikl->oikl", up.flatten(1), down)
    delta = product.reshape(weight.shape)
    return delta * ((pair.alpha if pair.alpha is not None else rank) / rank)


@contextmanager
def lora_applied(unet: nn.Module, lora_file: Path, scale: float) -> Iterator[LoraInfo]:
    """Merge ``lora_file`` into ``unet`` at ``scale`` for the duration of the block."""
    info = LoraInfo()
    pairs, info.skipped_text_encoder = parse_lora(load_file(str(lora_file)), unet)
    modules = dict(unet.named_modules())
    saved: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for name, pair in pairs.items():
                module = modules.get(name)
                if not isinstance(module, (nn.Linear, nn.Conv2d)):
                    raise PipelineError(f"LoRA targets {name}, which is not a linear or conv layer of the SDXL UNet",
                                        code="bad_settings")
                weight = module.weight
                delta = _delta(pair, weight)
                saved[name] = weight.detach().to("cpu", copy=True)
                weight.add_((delta * scale).to(weight.device, weight.dtype))
                info.applied += 1
        info.notes.append(f"style LoRA '{lora_file.stem}' at scale {scale:g} ({info.applied} layers)")
        if info.skipped_text_encoder:
            info.notes.append("the LoRA's text-encoder part was not used (the texture prompts are fixed)")
        yield info
    finally:
        with torch.no_grad():
            for name, original in saved.items():
                modules[name].weight.copy_(original.to(modules[name].weight.device))


__all__ = ["LoraInfo", "lora_applied", "parse_lora", "resolve_lora_file"]

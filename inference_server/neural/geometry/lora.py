"""Geometry LoRAs for the flow transformer: merged into the weights for a job, removed after.

Merging (``W += scale * alpha / rank * B @ A``) costs nothing per sampling step and needs no
extra package at inference. The touched weights are copied to the CPU first and written back on
unload, so a LoRA never leaves rounding residue in a bf16 model.

Key layouts read (``.safetensors`` only: pickled files can run code): the PEFT/diffusers layout
our trainer writes, ``transformer.<module>.lora_A.weight`` / ``lora_B.weight`` with module paths
inside the transformer's ``dit_model`` (``transformer.`` and ``dit_model.`` prefixes optional,
PEFT's ``.default`` adapter name accepted). ``alpha`` comes from the file's
``lora_adapter_metadata`` (``lora_alpha`` / ``r``), else per-module ``.alpha`` tensors, else
``alpha = rank``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ...pipeline.base import PipelineError

_KEY = re.compile(r"^(?:transformer\.)?(?:dit_model\.)?(.+?)\.(lora_A|lora_B)(?:\.default)?\.weight$")
_ALPHA = re.compile(r"^(?:transformer\.)?(?:dit_model\.)?(.+?)\.alpha$")


@dataclass
class LoraLayer:
    down: torch.Tensor  # (rank, in)
    up: torch.Tensor  # (out, rank)
    alpha: float


@dataclass
class MergedLora:
    """What a merge changed, to be undone by :func:`unmerge_lora`."""

    name: str
    scale: float
    saved: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def note(self) -> str:
        return f"geometry LoRA '{self.name}' at scale {self.scale:g} ({len(self.saved)} layers)"


def list_geometry_loras(lora_dir: Path | None) -> list[str]:
    """The names a job may ask for: the ``.safetensors`` stems in the folder."""
    if lora_dir is None or not lora_dir.is_dir():
        return []
    return sorted(p.stem for p in lora_dir.iterdir() if p.is_file() and p.suffix == ".safetensors"
                  and not p.name.startswith("."))


def resolve_geometry_lora(lora_dir: Path | None, name: str) -> Path:
    """The file a job's ``geometry_lora`` setting names inside the server's folder (no path escapes)."""
    if lora_dir is None:
        raise PipelineError("this server has no geometry LoRA folder (--geometry-lora-dir); clear the geometry "
                            "LoRA setting", code="bad_settings")
    if Path(name).name != name or name.startswith(".") or "\\" in name:
        raise PipelineError(f"geometry LoRA name {name!r} must be a plain file name", code="bad_settings")
    for candidate in (lora_dir / name, lora_dir / f"{name}.safetensors"):
        if candidate.is_file() and candidate.suffix == ".safetensors":
            return candidate
    raise PipelineError(f"geometry LoRA {name!r} not found in {lora_dir} (only .safetensors files are loaded)",
                        code="weights_missing")


def read_lora(path: Path) -> dict[str, LoraLayer]:
    """Module path inside ``dit_model`` -> (down, up, alpha)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own types for damaged files
        raise PipelineError(f"cannot read the geometry LoRA {path.name}: {exc}", code="weights_invalid") from exc
    global_alpha: float | None = None
    if "lora_adapter_metadata" in meta:
        try:
            peft = json.loads(meta["lora_adapter_metadata"])
            global_alpha = float(peft["lora_alpha"]) if "lora_alpha" in peft else None
        except (ValueError, TypeError, KeyError):
            global_alpha = None
    downs: dict[str, torch.Tensor] = {}
    ups: dict[str, torch.Tensor] = {}
    alphas: dict[str, float] = {}
    for key, tensor in state.items():
        if (m := _KEY.match(key)) is not None:
            (downs if m.group(2) == "lora_A" else ups)[m.group(1)] = tensor
        elif (a := _ALPHA.match(key)) is not None:
            alphas[a.group(1)] = float(tensor.item())
        else:
            raise PipelineError(f"{path.name} is not a geometry LoRA (unrecognised key {key})", code="weights_invalid")
    if not downs or set(downs) != set(ups):
        raise PipelineError(f"{path.name} has no complete LoRA pairs (lora_A with lora_B)", code="weights_invalid")
    layers = {}
    for module, down in downs.items():
        rank = down.shape[0]
        alpha = alphas.get(module, global_alpha if global_alpha is not None else float(rank))
        layers[module] = LoraLayer(down, ups[module], alpha)
    return layers


def merge_lora(transformer: nn.Module, path: Path, scale: float) -> MergedLora:
    """Merge ``path`` into ``transformer`` (a ``Step1X3DTransformer``) at ``scale``."""
    layers = read_lora(path)
    modules = dict(transformer.dit_model.named_modules())  # type: ignore[union-attr]
    merged = MergedLora(path.stem, float(scale))
    try:
        with torch.no_grad():
            for name, layer in layers.items():
                module = modules.get(name)
                if not isinstance(module, nn.Linear):
                    raise PipelineError(f"{path.name} targets {name}, which is not a linear layer of this geometry "
                                        "model (a LoRA for another model?)", code="weights_invalid")
                weight = module.weight
                delta = layer.up.float() @ layer.down.float() * (layer.alpha / layer.down.shape[0])
                if delta.shape != weight.shape:
                    raise PipelineError(f"{path.name} does not fit this geometry model ({name}: {tuple(delta.shape)} "
                                        f"vs {tuple(weight.shape)}); it was trained on another base model",
                                        code="weights_invalid")
                merged.saved[name] = weight.detach().to("cpu", copy=True)
                weight.copy_((weight.float() + scale * delta.to(weight.device)).to(weight.dtype))
    except BaseException:
        unmerge_lora(transformer, merged)
        raise
    return merged


def unmerge_lora(transformer: nn.Module, merged: MergedLora) -> None:
    """Put back the weights a merge replaced (bit-exact)."""
    modules = dict(transformer.dit_model.named_modules())  # type: ignore[union-attr]
    with torch.no_grad():
        for name, original in merged.saved.items():
            weight = modules[name].weight  # type: ignore[union-attr]
            weight.copy_(original.to(weight.device, weight.dtype))
    merged.saved.clear()

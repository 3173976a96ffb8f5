"""Loading the official geometry weights from a local folder (diffusers layout), strictly.

::

    Step1X-3D-Geometry-1300m/           (or -Label-1300m, which adds label_encoder/)
      scheduler/scheduler_config.json
      transformer/{config.json, diffusion_pytorch_model.safetensors}
      vae/{config.json, diffusion_pytorch_model.safetensors}
      visual_encoder/{config.json, diffusion_pytorch_model.safetensors}
      label_encoder/{config.json, diffusion_pytorch_model.safetensors}

Each module is built from its ``config.json`` with empty (meta) parameters, the checkpoint's
key set and shapes are checked against it from the safetensors header before any tensor is
read, and the tensors are then read one at a time, cast, and assigned with ``strict=True``.
Nothing here can reach the network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ...pipeline.base import PipelineError
from ...weights.layout import GEOMETRY_FOLDERS
from .configs import (
    LabelEncoderConfig,
    ShapeVAEConfig,
    TransformerConfig,
    VisualEncoderConfig,
    config_from_dict,
    read_config,
)
from .models.condition import ImageConditionEncoder, LabelEncoder
from .models.transformer import Step1X3DTransformer
from .models.vae import ShapeVAE

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"
SCHEDULER_CONFIG = "scheduler/scheduler_config.json"
VARIANTS = GEOMETRY_FOLDERS  # {"base": "Step1X-3D-Geometry-1300m", "label": "Step1X-3D-Geometry-Label-1300m"}
# Buffers older transformers versions saved with the CLIP/DINO weights; they are recomputed, not loaded.
IGNORED_CHECKPOINT_SUFFIXES = (".position_ids",)
M = TypeVar("M", bound=nn.Module)
DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "fp32": torch.float32, "float32": torch.float32}


def parse_dtype(value: str | torch.dtype | None, default: torch.dtype) -> torch.dtype:
    if value is None:
        return default
    if isinstance(value, torch.dtype):
        return value
    try:
        return DTYPES[value.lower()]
    except KeyError:
        raise PipelineError(f"unknown dtype {value!r}; use bf16, fp16 or fp32", code="bad_request") from None


def resolve_model_dir(path: str | Path, subfolder: str | None = None, variant: str | None = None) -> Path:
    """The folder holding ``transformer/`` etc.: ``path``, ``path/subfolder``, or a variant below ``path``.

    ``variant`` ("base" or "label") picks among the official subfolders when ``path`` is the
    repository root holding both; without it the base model is preferred.
    """
    root = Path(path).expanduser()
    if subfolder not in (None, "", "."):
        root = root / str(subfolder)
    if not root.is_dir():
        raise PipelineError(f"weights folder not found: {root}", code="weights_missing")
    if (root / "transformer").is_dir():
        return root
    names = [VARIANTS[variant]] if variant else [VARIANTS["base"], VARIANTS["label"]]
    if variant and variant not in VARIANTS:
        raise PipelineError(f"unknown model variant {variant!r}; use base or label", code="bad_request")
    for name in names:
        if (root / name / "transformer").is_dir():
            return root / name
    raise PipelineError(
        f"no Step1X-3D geometry model in {root}: expected transformer/ there, or a "
        f"{' or '.join(names)} subfolder (the official layout)",
        code="weights_missing",
    )


def component_files(model_dir: Path, name: str) -> tuple[Path, Path]:
    folder = model_dir / name
    config, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for f in (config, weights):
        if not f.is_file():
            raise PipelineError(f"missing weights file: {f}", code="weights_missing")
    return config, weights


def read_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header (no tensor data is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise PipelineError(f"cannot read {weights}: {exc}", code="weights_invalid") from exc


def _rename(key: str, renames: list[tuple[str, str]]) -> str:
    for official, local in renames:
        key = key.replace(official, local)
    return key


def _unrename(key: str, renames: list[tuple[str, str]]) -> str:
    for official, local in renames:
        key = key.replace(local, official)
    return key


def check_keys(module: nn.Module, shapes: Mapping[str, tuple[int, ...]], weights: Path) -> dict[str, str]:
    """Checkpoint key -> module key, after checking both sets and every shape match exactly.

    Raises ``PipelineError(code="weights_mismatch")`` naming the file and the offending keys
    (in the official spelling).
    """
    renames: list[tuple[str, str]] = getattr(module, "checkpoint_key_renames", lambda: [])()
    expected = module.state_dict(keep_vars=True)
    mapping: dict[str, str] = {}
    unexpected: list[str] = []
    wrong_shape: list[str] = []
    for key, shape in shapes.items():
        if key.endswith(IGNORED_CHECKPOINT_SUFFIXES):
            continue
        local = _rename(key, renames)
        if local not in expected:
            unexpected.append(key)
            continue
        if tuple(expected[local].shape) != tuple(shape):
            wrong_shape.append(f"{key} {tuple(shape)} (model expects {tuple(expected[local].shape)})")
        mapping[key] = local
    missing = sorted(_unrename(k, renames) for k in expected if k not in set(mapping.values()))
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", sorted(unexpected)),
                        ("shape mismatches", wrong_shape)):
        if keys:
            more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
            problems.append(f"{label}: {', '.join(keys[:5])}{more}")
    if problems:
        raise PipelineError(
            f"{weights} does not match the model its config.json describes; " + "; ".join(problems),
            code="weights_mismatch",
        )
    return mapping


def load_weights(module: M, weights: Path, dtype: torch.dtype,
                 shapes: Mapping[str, tuple[int, ...]] | None = None) -> M:
    """Strictly load ``weights`` into ``module`` (built on the meta device), casting floats to ``dtype``.

    A module with ``drop_unused()`` and ``UNUSED_PREFIXES`` is checked against the whole file,
    then loses those parts before any tensor is read (their keys are skipped).
    """
    from safetensors import safe_open

    mapping = check_keys(module, shapes if shapes is not None else read_shapes(weights), weights)
    unused: tuple[str, ...] = getattr(module, "UNUSED_PREFIXES", ())
    if unused:
        module.drop_unused()  # type: ignore[operator]
        mapping = {key: local for key, local in mapping.items() if not local.startswith(unused)}
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(weights), framework="pt") as f:
        for key, local in mapping.items():
            t = f.get_tensor(key)
            state[local] = t.to(dtype) if t.is_floating_point() else t
    module.load_state_dict(state, strict=True, assign=True)
    module.requires_grad_(False)
    module.eval()
    return module


def build_empty(factory: Callable[..., M], *args: Any, config_path: Path | None = None) -> M:
    """Build a module with parameters on the meta device (buffers stay real: they are not in the files).

    A config the module cannot be built from raises ``PipelineError(code="weights_invalid")``
    naming ``config_path``.
    """
    from accelerate import init_empty_weights

    try:
        with init_empty_weights(include_buffers=False):
            return factory(*args)
    except (ValueError, TypeError, KeyError) as exc:
        where = f"{config_path}: " if config_path else ""
        raise PipelineError(f"{where}cannot build the model this config describes ({exc})",
                            code="weights_invalid") from exc


@dataclass
class GeometryComponents:
    transformer: Step1X3DTransformer
    vae: ShapeVAE
    visual_encoder: ImageConditionEncoder
    scheduler: Any  # diffusers FlowMatchEulerDiscreteScheduler
    label_encoder: LabelEncoder | None
    model_dir: Path


def load_scheduler(model_dir: Path) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    config = read_config(model_dir / SCHEDULER_CONFIG)
    known = {k: v for k, v in config.items() if not k.startswith("_")}
    return FlowMatchEulerDiscreteScheduler.from_config(known)


def load_components(model_dir: Path, dtype: torch.dtype = torch.bfloat16,
                    vae_dtype: torch.dtype = torch.float32) -> GeometryComponents:
    """Build and load every component of one geometry model folder (on the CPU)."""
    t_cfg_path, t_weights = component_files(model_dir, "transformer")
    t_cfg = config_from_dict(TransformerConfig, read_config(t_cfg_path))
    if t_cfg.use_caption_condition:
        raise PipelineError("caption-conditioned geometry models are not supported (no such model was released)",
                            code="not_implemented")
    transformer = load_weights(build_empty(Step1X3DTransformer, t_cfg, config_path=t_cfg_path), t_weights, dtype)

    v_cfg_path, v_weights = component_files(model_dir, "vae")
    v_cfg = config_from_dict(ShapeVAEConfig, read_config(v_cfg_path))
    vae = load_weights(build_empty(ShapeVAE, v_cfg, config_path=v_cfg_path), v_weights, vae_dtype)

    e_cfg_path, e_weights = component_files(model_dir, "visual_encoder")
    e_cfg = config_from_dict(VisualEncoderConfig, read_config(e_cfg_path))
    if e_cfg.encode_camera:
        raise PipelineError("camera-conditioned image encoders are not supported (the released models do not use "
                            f"them); {e_cfg_path} asks for one", code="not_implemented")
    shapes = read_shapes(e_weights)
    with_clip = any(k.startswith("clip_model.") for k in shapes)
    visual = load_weights(build_empty(ImageConditionEncoder, e_cfg, shapes, with_clip, config_path=e_cfg_path),
                          e_weights, dtype, shapes)

    label: LabelEncoder | None = None
    if t_cfg.use_label_condition:
        l_cfg_path, l_weights = component_files(model_dir, "label_encoder")
        l_cfg = config_from_dict(LabelEncoderConfig, read_config(l_cfg_path))
        label = load_weights(build_empty(LabelEncoder, l_cfg, config_path=l_cfg_path), l_weights, dtype)

    return GeometryComponents(transformer=transformer, vae=vae, visual_encoder=visual,
                              scheduler=load_scheduler(model_dir), label_encoder=label, model_dir=model_dir)


def official_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state under the official key names (the inverse of the loader's renames)."""
    renames: list[tuple[str, str]] = getattr(module, "checkpoint_key_renames", lambda: [])()
    return {_unrename(k, renames): v for k, v in module.state_dict().items()}

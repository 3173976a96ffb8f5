"""``step1x3d weights check``: every file of a weights folder against our model definitions,
from the safetensors headers alone (no tensor is read), one line per problem.

Each model is built from its ``config.json`` with empty (meta) parameters, and the file's tensor
names and shapes are compared with the model's: the geometry components (strictly, with the
loader's own key renames), the texture adapter (MV-Adapter processors on the SDXL UNet plus the
geometry adapter), and SDXL's UNet, text encoders and the fp16-fix VAE. The same check runs
when the ``step1x3d`` backend starts. Needs the ``neural`` extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..neural.geometry.configs import read_config
from ..pipeline.base import PipelineError
from .layout import ADAPTER_NAME, GEOMETRY_FOLDERS, SDXL_FOLDER, SDXL_VAE_FOLDER, TEXTURE_FOLDER, find_layout

Shapes = dict[str, tuple[int, ...]]
# Weight files of one diffusers/transformers component, best first (what the loaders read).
COMPONENT_WEIGHTS = ("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors",
                     "model.fp16.safetensors", "model.safetensors")
IGNORED_SUFFIXES = (".position_ids",)  # buffers some transformers versions saved; never loaded
SHOWN = 5


def check_folder(root: str | Path) -> list[str]:
    """Problems of a weights folder (the fetch layout, or one geometry model folder)."""
    layout = find_layout(root)
    texture_parts = (layout.root / TEXTURE_FOLDER, layout.root / SDXL_FOLDER, layout.root / SDXL_VAE_FOLDER)
    wants_texture = any(p.exists() for p in texture_parts)
    if not layout.geometry and not wants_texture:
        return [f"{layout.root}: no Step1X-3D weights here (expected {', '.join(GEOMETRY_FOLDERS.values())}, "
                f"{TEXTURE_FOLDER}/, {SDXL_FOLDER}/ or {SDXL_VAE_FOLDER}/, or a model folder with transformer/)"]
    texture = (texture_parts[0] / ADAPTER_NAME, texture_parts[1], texture_parts[2]) if wants_texture else None
    return check_parts(layout.geometry.values(), texture)


def check_configured(weights: str | Path, sdxl_dir: str | Path | None = None,
                     vae_dir: str | Path | None = None) -> list[str]:
    """What ``serve --weights`` will load (geometry models, and the texture stage when it is
    configured), checked at start; nothing when ``weights`` holds no geometry model (the backend
    then says what is missing)."""
    from .layout import texture_paths

    layout = find_layout(weights)
    if not layout.geometry:
        return []
    return check_parts(layout.geometry.values(), texture_paths(weights, None, sdxl_dir, vae_dir))


def check_parts(geometry: Iterable[Path], texture: tuple[Path, Path, Path] | None) -> list[str]:
    """Problems of these geometry model folders and (adapter file, SDXL folder, VAE folder)."""
    problems: list[str] = []
    for folder in geometry:
        problems += check_geometry(Path(folder))
    if texture is not None:
        problems += check_texture(*texture)
    return problems


def _attempt(problems: list[str], fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except PipelineError as exc:
        problems.append(" ".join(str(exc).split()))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        problems.append(f"{args[0] if args else ''}: {exc}")
    return None


# -- geometry ----------------------------------------------------------------------------------
def check_geometry(model_dir: Path) -> list[str]:
    from ..neural.geometry.loader import SCHEDULER_CONFIG

    problems: list[str] = []
    if not (model_dir / SCHEDULER_CONFIG).is_file():
        problems.append(f"missing weights file: {model_dir / SCHEDULER_CONFIG}")
    t_cfg = _attempt(problems, _check_component, model_dir, "transformer")
    _attempt(problems, _check_component, model_dir, "vae")
    _attempt(problems, _check_component, model_dir, "visual_encoder")
    wants_label = bool(getattr(t_cfg, "use_label_condition", False)) if t_cfg is not None \
        else (model_dir / "label_encoder").is_dir()
    if wants_label:
        _attempt(problems, _check_component, model_dir, "label_encoder")
    return problems


def _check_component(model_dir: Path, name: str) -> Any:
    """Check one component; returns its config (the transformer's says whether labels are used)."""
    from ..neural.geometry import configs as c
    from ..neural.geometry.loader import build_empty, check_keys, component_files, read_shapes
    from ..neural.geometry.models.condition import ImageConditionEncoder, LabelEncoder
    from ..neural.geometry.models.transformer import Step1X3DTransformer
    from ..neural.geometry.models.vae import ShapeVAE

    cfg_path, weights = component_files(model_dir, name)
    shapes = read_shapes(weights)
    module: Any
    if name == "transformer":
        cfg: Any = c.config_from_dict(c.TransformerConfig, c.read_config(cfg_path))
        module = build_empty(Step1X3DTransformer, cfg, config_path=cfg_path)
    elif name == "vae":
        cfg = c.config_from_dict(c.ShapeVAEConfig, c.read_config(cfg_path))
        module = build_empty(ShapeVAE, cfg, config_path=cfg_path)
    elif name == "visual_encoder":
        cfg = c.config_from_dict(c.VisualEncoderConfig, c.read_config(cfg_path))
        with_clip = any(k.startswith("clip_model.") for k in shapes)
        module = build_empty(ImageConditionEncoder, cfg, shapes, with_clip, config_path=cfg_path)
    else:
        cfg = c.config_from_dict(c.LabelEncoderConfig, c.read_config(cfg_path))
        module = build_empty(LabelEncoder, cfg, config_path=cfg_path)
    check_keys(module, shapes, weights)
    return cfg


# -- texture -----------------------------------------------------------------------------------
def check_texture(adapter: Path, sdxl: Path, vae: Path) -> list[str]:
    from ..neural.texture.loading import check_sdxl_dir, resolve_vae_dir

    problems: list[str] = []
    unet_config: dict[str, Any] | None = None
    _attempt(problems, check_sdxl_dir, sdxl)
    if not problems:  # the folder's structure is right: check each model in it
        unet_config = _attempt(problems, _check_diffusers, sdxl / "unet", "unet")
        _attempt(problems, _check_text_encoder, sdxl / "text_encoder", False)
        _attempt(problems, _check_text_encoder, sdxl / "text_encoder_2", True)
    vae_folder = _attempt(problems, resolve_vae_dir, vae)
    if vae_folder is not None:
        _attempt(problems, _check_diffusers, vae_folder, "vae")
    if not adapter.is_file():
        problems.append(f"missing weights file: {adapter}")
    elif unet_config is not None:
        _attempt(problems, _check_adapter, adapter, unet_config)
    return problems


def weights_file(folder: Path) -> Path:
    for name in COMPONENT_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise PipelineError(f"missing weights file in {folder} (expected one of {', '.join(COMPONENT_WEIGHTS)})",
                        code="weights_missing")


def header_shapes(path: Path) -> Shapes:
    from ..neural.geometry.loader import read_shapes

    return {k: v for k, v in read_shapes(path).items() if not k.endswith(IGNORED_SUFFIXES)}


def compare(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]], path: Path) -> None:
    """Raise one line naming the missing, unexpected and mis-shaped tensors of ``path``."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{k} {found[k]} (model expects {expected[k]})" for k in sorted(set(found) & set(expected))
             if tuple(found[k]) != tuple(expected[k])]
    parts = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong)):
        if keys:
            more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
            parts.append(f"{label}: {', '.join(keys[:SHOWN])}{more}")
    if parts:
        raise PipelineError(f"{path} does not match the model its config.json describes; " + "; ".join(parts),
                            code="weights_mismatch")


def _expected(module: Any) -> Shapes:
    return {k: tuple(v.shape) for k, v in module.state_dict(keep_vars=True).items()
            if not k.endswith(IGNORED_SUFFIXES)}


def _empty_diffusers(kind: str, config: dict[str, Any]) -> Any:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel

    cls = UNet2DConditionModel if kind == "unet" else AutoencoderKL
    with init_empty_weights():
        return cls.from_config(config)


def _check_diffusers(folder: Path, kind: str) -> dict[str, Any]:
    config = read_config(folder / "config.json")
    weights = weights_file(folder)
    compare(_expected(_empty_diffusers(kind, config)), header_shapes(weights), weights)
    return config


def _check_text_encoder(folder: Path, with_projection: bool) -> None:
    from accelerate import init_empty_weights
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig.from_dict(read_config(folder / "config.json"))
    weights = weights_file(folder)
    with init_empty_weights():
        module = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)
    compare(_expected(module), header_shapes(weights), weights)


def _check_adapter(adapter: Path, unet_config: dict[str, Any]) -> None:
    import torch

    from ..neural.texture.models import build_geometry_adapter, install_mv_processors

    unet = _empty_diffusers("unet", unet_config)
    install_mv_processors(unet, device="meta", dtype=torch.float16)
    with torch.device("meta"):
        geometry_adapter = build_geometry_adapter(unet.config)
    expected = {k: v for k, v in _expected(unet).items() if ".processor." in k}
    expected.update(_expected(geometry_adapter))
    compare(expected, header_shapes(adapter), adapter)


__all__ = ["check_configured", "check_folder", "check_geometry", "check_parts", "check_texture", "compare", "header_shapes"]

"""Which hub files each model needs: exactly the files our loaders read, nothing else.

Weight files list alternatives, best first: the fp16 variant where a repository has one (half
the download; the loaders read it and cast). Repository ids and file names are the public
release's (``stepfun-ai/Step1X-3D``, SDXL base 1.0 and the fp16-fix VAE, as upstream's code
loads them). Never downloaded: ``model_index.json`` files, the SDXL refiner and single-file
checkpoints, SDXL's own VAE, fp32 copies when an fp16 one exists, ONNX/Flax exports.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layout import ADAPTER_NAME, GEOMETRY_FOLDERS, SDXL_FOLDER, SDXL_VAE_FOLDER, TEXTURE_FOLDER

STEP1X3D_REPO = "stepfun-ai/Step1X-3D"
SDXL_REPO = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_VAE_REPO = "madebyollin/sdxl-vae-fp16-fix"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
DIFFUSERS_WEIGHTS_FP16 = "diffusion_pytorch_model.fp16.safetensors"
GEOMETRY_COMPONENTS = ("transformer", "vae", "visual_encoder")
DEFAULT_MODELS = ("geometry", "texture")


@dataclass(frozen=True)
class Want:
    """One file to fetch: the first of ``names`` the repository has (paths in the repository)."""

    names: tuple[str, ...]
    optional: bool = False


@dataclass(frozen=True)
class Source:
    repo_id: str
    folder: str  # where the repository's files go, relative to the weights folder ("" = the folder itself)
    wants: tuple[Want, ...]
    follows_revision: bool  # --revision applies (the Step1X-3D repository); others use main


def _one(*names: str, optional: bool = False) -> Want:
    return Want(tuple(names), optional)


def _geometry(folder: str, label: bool) -> Source:
    components = GEOMETRY_COMPONENTS + (("label_encoder",) if label else ())
    wants = [_one(f"{folder}/scheduler/scheduler_config.json")]
    for c in components:
        wants += [_one(f"{folder}/{c}/config.json"), _one(f"{folder}/{c}/{DIFFUSERS_WEIGHTS}")]
    return Source(STEP1X3D_REPO, "", tuple(wants), follows_revision=True)


def _sdxl() -> Source:
    wants = [_one("scheduler/scheduler_config.json")]
    for tok in ("tokenizer", "tokenizer_2"):
        wants += [_one(f"{tok}/vocab.json"), _one(f"{tok}/merges.txt"), _one(f"{tok}/tokenizer_config.json"),
                  _one(f"{tok}/special_tokens_map.json", optional=True)]
    for enc in ("text_encoder", "text_encoder_2"):
        wants += [_one(f"{enc}/config.json"), _one(f"{enc}/model.fp16.safetensors", f"{enc}/model.safetensors")]
    wants += [_one("unet/config.json"), _one(f"unet/{DIFFUSERS_WEIGHTS_FP16}", f"unet/{DIFFUSERS_WEIGHTS}")]
    return Source(SDXL_REPO, SDXL_FOLDER, tuple(wants), follows_revision=False)


def _sdxl_vae() -> Source:
    return Source(SDXL_VAE_REPO, SDXL_VAE_FOLDER, (_one("config.json"), _one(DIFFUSERS_WEIGHTS)), follows_revision=False)


MODELS: dict[str, tuple[Source, ...]] = {
    "geometry": (_geometry(GEOMETRY_FOLDERS["base"], label=False),),
    "geometry-label": (_geometry(GEOMETRY_FOLDERS["label"], label=True),),
    "texture": (
        Source(STEP1X3D_REPO, "", (_one(f"{TEXTURE_FOLDER}/{ADAPTER_NAME}"),), follows_revision=True),
        _sdxl(),
        _sdxl_vae(),
    ),
}


def parse_models(text: str) -> tuple[str, ...]:
    """``"geometry,texture"`` -> the model names, checked; ``all`` means every model."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if names == ("all",):
        return tuple(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise ValueError(f"unknown model {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODELS)} or all")
    return names


def sources_for(models: tuple[str, ...]) -> list[Source]:
    """The models' sources merged per (repository, folder), wants in a stable order."""
    merged: dict[tuple[str, str], Source] = {}
    for model in models:
        for src in MODELS[model]:
            key = (src.repo_id, src.folder)
            if key in merged:
                old = merged[key]
                wants = old.wants + tuple(w for w in src.wants if w not in old.wants)
                merged[key] = Source(src.repo_id, src.folder, wants, src.follows_revision)
            else:
                merged[key] = src
    return list(merged.values())


__all__ = ["DEFAULT_MODELS", "MODELS", "SDXL_REPO", "SDXL_VAE_REPO", "STEP1X3D_REPO", "Source", "Want",
           "parse_models", "sources_for"]

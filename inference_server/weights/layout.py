"""The folder layout ``step1x3d weights fetch`` writes and ``serve --weights DIR`` reads.

::

    DIR/
      Step1X-3D-Geometry-1300m/          geometry, base model      (stepfun-ai/Step1X-3D)
      Step1X-3D-Geometry-Label-1300m/    geometry, label model     (stepfun-ai/Step1X-3D)
      Step1X-3D-Texture/step1x-3d-ig2v.safetensors   texture adapter (stepfun-ai/Step1X-3D)
      stable-diffusion-xl-base-1.0/      SDXL base, diffusers layout (stabilityai/...)
      sdxl-vae-fp16-fix/                 the fp16-fix SDXL VAE      (madebyollin/...)

The first three are the official release's own subfolders; the SDXL folders are named after
their hub repositories. Pure Python (no torch): the fetch command and the backend share it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

GEOMETRY_FOLDERS: dict[str, str] = {"base": "Step1X-3D-Geometry-1300m", "label": "Step1X-3D-Geometry-Label-1300m"}
TEXTURE_FOLDER = "Step1X-3D-Texture"
ADAPTER_NAME = "step1x-3d-ig2v.safetensors"
SDXL_FOLDER = "stable-diffusion-xl-base-1.0"
SDXL_VAE_FOLDER = "sdxl-vae-fp16-fix"
# Where the SDXL folders come from when no option names them (then the layout's own folders).
ENV_SDXL = "STEP1X3D_SDXL_DIR"
ENV_SDXL_VAE = "STEP1X3D_SDXL_VAE_DIR"


@dataclass(frozen=True)
class Layout:
    """What a weights folder holds (None / empty where a part is absent)."""

    root: Path
    geometry: dict[str, Path]  # "base"/"label" -> model folder
    adapter: Path | None
    sdxl: Path | None
    sdxl_vae: Path | None


def find_layout(root: str | Path) -> Layout:
    """Discover the parts of ``root``: the layout above, or one geometry model folder itself."""
    root = Path(root).expanduser()
    geometry: dict[str, Path] = {}
    if (root / "transformer").is_dir():
        geometry["label" if (root / "label_encoder").is_dir() else "base"] = root
    else:
        for kind, name in GEOMETRY_FOLDERS.items():
            if (root / name / "transformer").is_dir():
                geometry[kind] = root / name
    adapter = root / TEXTURE_FOLDER / ADAPTER_NAME
    sdxl, vae = root / SDXL_FOLDER, root / SDXL_VAE_FOLDER
    return Layout(root=root, geometry=geometry, adapter=adapter if adapter.is_file() else None,
                  sdxl=sdxl if sdxl.is_dir() else None, sdxl_vae=vae if vae.is_dir() else None)


def texture_paths(root: str | Path, adapter: str | Path | None = None, sdxl: str | Path | None = None,
                  vae: str | Path | None = None) -> tuple[Path, Path, Path] | None:
    """(adapter file, SDXL folder, SDXL VAE folder) for the texture stage, or None when one is
    not configured. Each comes from its option, else the environment (SDXL folders), else the
    weights folder's own layout, so weights fetched by ``step1x3d weights fetch`` need nothing else.
    """
    root = Path(root).expanduser()
    adapter_file = Path(adapter).expanduser() if adapter else root / TEXTURE_FOLDER / ADAPTER_NAME
    sdxl = sdxl or os.environ.get(ENV_SDXL) or (root / SDXL_FOLDER if (root / SDXL_FOLDER).is_dir() else None)
    vae = vae or os.environ.get(ENV_SDXL_VAE) or (root / SDXL_VAE_FOLDER if (root / SDXL_VAE_FOLDER).is_dir() else None)
    if not adapter_file.is_file() or not sdxl or not vae:
        return None
    return adapter_file, Path(sdxl).expanduser(), Path(vae).expanduser()


__all__ = ["ADAPTER_NAME", "GEOMETRY_FOLDERS", "Layout", "SDXL_FOLDER", "SDXL_VAE_FOLDER", "TEXTURE_FOLDER",
           "find_layout", "texture_paths"]

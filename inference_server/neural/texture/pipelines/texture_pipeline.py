"""Upstream's Python API: ``Step1X3DTexturePipeline.from_pretrained(DIR, subfolder=...)`` then ``pipe(image, mesh)``.

The upstream two-stage example runs with only its import line changed::

    from inference_server.neural.texture import Step1X3DTexturePipeline
    texture_pipeline = Step1X3DTexturePipeline.from_pretrained("/models/Step1X-3D", subfolder="Step1X-3D-Texture")
    textured_mesh = texture_pipeline("input.png", untextured_mesh)   # a trimesh.Trimesh
    textured_mesh.export("textured_mesh.glb")

Differences, all deliberate: ``DIR`` must be a local folder (no hub downloads); the SDXL base and
fp16-fix VAE folders come from keyword arguments or ``STEP1X3D_SDXL_DIR`` /
``STEP1X3D_SDXL_VAE_DIR``; there is no background-removal network (the image's alpha is used,
else a plain background is keyed out); ``seed`` really fixes the result. The reference image is
then prepared exactly as upstream prepares it (crop box from alpha > 0, its padding and
truncation; the server's stage keeps its own, see docs/texture.md).

Like upstream, this API synchronises the views through a latent texture during the first half
of the steps (``texture_sync_ratio=0.5``; the server's default is off); pass
``texture_sync_ratio=0`` to ``from_pretrained`` to turn it off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from blender_addon.protocol.settings import JobSettings

from ....assets import MeshData, PBRMaterial
from ....pipeline.base import JobContext, PipelineError
from ..config import TextureConfig
from ..stage import TextureStage
from ..sync import DEFAULT_RATIO as UPSTREAM_SYNC_RATIO

ADAPTER_FILE = "step1x-3d-ig2v.safetensors"


def _to_rgba(image: Any) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            image = opened.convert("RGBA") if opened.mode in ("RGBA", "LA", "P", "PA") else opened.convert("RGB")
            image = np.asarray(image)
    elif isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGBA") if "A" in image.getbands() else image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return array


def trimesh_to_meshdata(loaded: trimesh.Trimesh | trimesh.Scene) -> MeshData:
    mesh = loaded.to_geometry() if isinstance(loaded, trimesh.Scene) else loaded
    if not isinstance(mesh, trimesh.Trimesh):
        raise PipelineError("the mesh to texture must be a triangle mesh", code="bad_mesh")
    uvs = None
    visual_uv = getattr(mesh.visual, "uv", None)
    if visual_uv is not None and len(visual_uv) == len(mesh.vertices):
        uv = np.asarray(visual_uv, np.float32)
        uvs = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1)  # trimesh: v up; ours (glTF): v down
    return MeshData(positions=np.asarray(mesh.vertices, np.float32), faces=np.asarray(mesh.faces, np.uint32), uvs=uvs)


def meshdata_to_trimesh(mesh: MeshData, material: PBRMaterial) -> trimesh.Trimesh:
    assert mesh.uvs is not None
    uv = np.stack([mesh.uvs[:, 0], 1.0 - mesh.uvs[:, 1]], axis=1)
    pbr = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(material.base_color) if material.base_color is not None else None,
        metallicRoughnessTexture=Image.fromarray(material.orm) if material.orm is not None else None,
        normalTexture=Image.fromarray(material.normal) if material.normal is not None else None,
        occlusionTexture=Image.fromarray(material.orm) if material.orm is not None else None,
        baseColorFactor=[int(round(255 * f)) for f in material.base_color_factor],
        metallicFactor=material.metallic_factor,
        roughnessFactor=material.roughness_factor,
    )
    return trimesh.Trimesh(
        vertices=mesh.positions, faces=mesh.faces, vertex_normals=mesh.normals,
        visual=trimesh.visual.TextureVisuals(uv=uv, material=pbr), process=False,
    )


class Step1X3DTexturePipeline:
    def __init__(self, config: TextureConfig) -> None:
        self.config = config
        self.stage = TextureStage(config)

    @classmethod
    def from_pretrained(
        cls,
        model_path: str | os.PathLike[str],
        subfolder: str = "Step1X-3D-Texture",
        *,
        sdxl_dir: str | os.PathLike[str] | None = None,
        vae_dir: str | os.PathLike[str] | None = None,
        lora_dir: str | os.PathLike[str] | None = None,
        device: str | None = None,
        dtype: str = "auto",
        **options: Any,
    ) -> "Step1X3DTexturePipeline":
        """``options``: further :class:`TextureConfig` fields (``offload``, ``resolution``,
        ``texture_sync_ratio`` (default 0.5 here, as upstream), ...)."""
        options.setdefault("texture_sync_ratio", UPSTREAM_SYNC_RATIO)
        options.setdefault("reference_preprocessing", "upstream")  # crop box and padding as upstream
        adapter = Path(model_path) / subfolder / ADAPTER_FILE if subfolder else Path(model_path) / ADAPTER_FILE
        config = TextureConfig.from_env(adapter, sdxl_dir=sdxl_dir, vae_dir=vae_dir, lora_dir=lora_dir,
                                        device=device, dtype=dtype, **options)
        pipe = cls(config)
        pipe.stage.load()  # fail here, as upstream does, when something is missing
        return pipe

    def __call__(
        self,
        image: Any,
        mesh: trimesh.Trimesh | trimesh.Scene,
        remove_bg: bool = True,
        seed: int = 2025,
        *,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        texture_size: int = 2048,
        pbr: bool = False,
    ) -> trimesh.Trimesh:
        """Paint ``mesh`` after ``image``; returns a textured ``trimesh.Trimesh`` (base colour, plus
        ORM and normal maps with ``pbr=True``). ``remove_bg`` is accepted for compatibility: the
        object is always cut out (alpha, else a keyed plain background)."""
        del remove_bg
        settings = JobSettings(mode="texture", seed=int(seed), texture_steps=int(num_inference_steps),
                               texture_guidance=float(guidance_scale), texture_size=int(texture_size), pbr=pbr)
        data = trimesh_to_meshdata(mesh)
        out_mesh, material, _ = self.stage.run(data, [_to_rgba(image)], settings, JobContext())
        return meshdata_to_trimesh(out_mesh, material)


__all__ = ["Step1X3DTexturePipeline", "meshdata_to_trimesh", "trimesh_to_meshdata"]

"""The texture validation sheet: a few prepared assets' six generated views and baked texture with the
LoRA off and on (``validation/step-<step, 8 digits>.png``), written at each checkpoint.

Each asset gets two rows, base model and LoRA, each: its reference image, the six views the
multi-view model generates for it (same seed and settings twice, so the rows differ only by the
LoRA), and those views baked into the asset's own UV layout (a fresh atlas when it has none
usable), as a texture job would do. The assets are the run's held-out ones when it has a split
(``validation_holdout``), else its first training assets, and the sheet says which. Runs on rank 0
between steps; the LoRA layers are switched off and on in place (``set_lora_enabled``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from ...assets import MeshData
from ...export.files import write_atomic
from ...neural.texture.conditioning import ViewMesh
from ..geometry.validation import set_lora_enabled
from .data import TextureSet

TILE = 96  # pixels per panel
COLUMNS = 8  # reference, six views, baked texture
HEADER = 22
LABEL = 12


class TextureValidationSheet:
    def __init__(self, unet: nn.Module, cond_encoder: nn.Module, vae: nn.Module, scheduler: object,
                 prompt: object, data: TextureSet, indices: Sequence[int], count: int, device: torch.device, *,
                 dtype: torch.dtype = torch.float32, steps: int = 30, guidance: float = 3.0, seed: int = 0,
                 texture_size: int = 256, held_out: bool = False) -> None:
        from ...neural.texture.loading import TextureModels
        from ...neural.texture.pipelines.multiview_sdxl import MultiViewSDXL, PromptEmbeds

        assert isinstance(prompt, PromptEmbeds)
        models = TextureModels(unet=unet, cond_encoder=cond_encoder, vae=vae,  # type: ignore[arg-type]
                               text_encoder=None, text_encoder_2=None,  # type: ignore[arg-type]  # prompts precomputed
                               tokenizer=None, tokenizer_2=None, scheduler=scheduler)  # type: ignore[arg-type]
        self.pipe = MultiViewSDXL(models, device, dtype)
        self.pipe.set_prompt_embeds(prompt)
        self.unet = unet
        self.data = data
        self.indices = list(indices)[:count]
        self.steps, self.guidance, self.seed = steps, guidance, seed
        self.texture_size = texture_size
        self.held_out = held_out

    def _row(self, inputs: dict[str, np.ndarray], mesh: MeshData, view_mesh: ViewMesh) -> list[np.ndarray]:
        from ...neural.texture.bake import bake_texture
        from ...neural.texture.conditioning import mv_views

        views = self.pipe(inputs["reference"], torch.from_numpy(inputs["control"]), num_inference_steps=self.steps,
                          guidance_scale=self.guidance, generator=torch.Generator("cpu").manual_seed(self.seed))
        images = views.numpy()  # (6, 3, H, W) in [0, 1]
        assert mesh.uvs is not None  # _with_uvs guarantees them
        texture, _ = bake_texture(view_mesh, mesh.uvs, images, mv_views(), self.texture_size,
                                  bake_resolution=max(self.texture_size, images.shape[-1]))
        tiles = [_tile(np.round(v.transpose(1, 2, 0) * 255).astype(np.uint8)) for v in images]
        return tiles + [_tile(texture)]

    def write(self, path: Path, step: int) -> Path:
        from ...neural.texture.conditioning import prepare_view_mesh

        was_training = self.unet.training
        self.unet.eval()
        rows: list[tuple[str, list[np.ndarray]]] = []
        note = "held out" if self.held_out else "a training asset: no held-out split"
        try:
            for i in self.indices:
                inputs = self.data.validation_inputs(i)
                mesh = _with_uvs(inputs, self.texture_size)
                view_mesh = prepare_view_mesh(mesh.positions, mesh.faces)
                reference = _tile(inputs["reference"])
                source = self.data.objects[i]["source"]
                for enabled, label in ((False, "base model"), (True, f"LoRA, step {step}")):
                    set_lora_enabled(self.unet, enabled)
                    with torch.no_grad():
                        rows.append((f"{source} ({note}): {label}", [reference] + self._row(inputs, mesh, view_mesh)))
        finally:
            set_lora_enabled(self.unet, True)
            self.unet.train(was_training)
        return compose(rows, path)


def _with_uvs(inputs: dict[str, np.ndarray], texture_size: int) -> MeshData:
    """The asset's mesh with its own UVs (trimesh's v-up flipped to glTF's), or a fresh atlas when
    those cannot hold a texture (a vertex-coloured PLY), as the texture stage does."""
    from ...pipeline.mesh_input import has_usable_uvs
    from ...uv.atlas import unwrap

    uvs = inputs["uvs"].astype(np.float32).copy()
    uvs[:, 1] = 1.0 - uvs[:, 1]
    mesh = MeshData(positions=inputs["positions"].astype(np.float32), faces=inputs["faces"].astype(np.uint32), uvs=uvs)
    if has_usable_uvs(mesh):
        return mesh
    return unwrap(MeshData(positions=mesh.positions, faces=mesh.faces), texture_size=texture_size)


def _tile(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(image[..., :3])).resize((TILE, TILE), Image.Resampling.BILINEAR))


def compose(rows: list[tuple[str, list[np.ndarray]]], path: Path) -> Path:
    """Rows of ``COLUMNS`` tiles under a header naming the columns; each row labelled above its tiles."""
    sheet = Image.new("RGB", (COLUMNS * TILE, HEADER + len(rows) * (TILE + LABEL)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    titles = ["reference"] + [f"view {k + 1}" for k in range(COLUMNS - 2)] + ["baked texture"]
    for col, title in enumerate(titles):
        draw.text((col * TILE + 4, 5), title, fill=(0, 0, 0))
    for r, (name, tiles) in enumerate(rows):
        y = HEADER + r * (TILE + LABEL)
        draw.text((4, y), name[:120], fill=(80, 80, 80))
        for c, tile in enumerate(tiles):
            sheet.paste(Image.fromarray(tile), (c * TILE, y + LABEL))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())
    return path


__all__ = ["COLUMNS", "HEADER", "LABEL", "TILE", "TextureValidationSheet", "compose"]

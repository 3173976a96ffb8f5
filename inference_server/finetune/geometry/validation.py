"""The validation sheet: a few prepared objects' condition renders beside meshes sampled without and
with the LoRA being trained, rendered with our rasterizer (``validation/step-<step, 8 digits>.png``).
The objects are the run's held-out ones when it has a split (``validation_holdout``), else the
first training objects, and each row's label says which.

Each row samples from the object's first condition view with the same noise twice (LoRA layers off,
then on), decodes with the VAE, extracts the surface at a modest octree resolution and renders it
from the same camera, so the two columns differ only by the LoRA. Runs on rank 0 between steps.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from ...export.files import write_atomic
from .data import PreparedSet

TILE = 160
VIEW = np.array([0.45, 0.35, 1.0]) / np.linalg.norm([0.45, 0.35, 1.0])  # front, a little right and above


def set_lora_enabled(transformer: nn.Module, enabled: bool) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer):
            module.enable_adapters(enabled)


class ValidationSheet:
    def __init__(self, model_dir: Path, data: PreparedSet, count: int, device: torch.device, *, steps: int = 30,
                 guidance: float = 7.5, octree_resolution: int = 128, seed: int = 0,
                 indices: Sequence[int] | None = None, held_out: bool = False) -> None:
        from ...neural.geometry.configs import ShapeVAEConfig, config_from_dict, read_config
        from ...neural.geometry.loader import build_empty, component_files, load_scheduler, load_weights
        from ...neural.geometry.models.vae import ShapeVAE

        cfg_path, weights = component_files(model_dir, "vae")
        v_cfg = config_from_dict(ShapeVAEConfig, read_config(cfg_path))
        self.vae = load_weights(build_empty(ShapeVAE, v_cfg, config_path=cfg_path), weights, torch.float32).to(device)
        self.scheduler = load_scheduler(model_dir)  # its own: sampling sets inference timesteps on it
        self.data = data
        self.indices = list(indices if indices is not None else range(len(data)))[:count]
        self.held_out = held_out
        self.device = device
        self.steps, self.guidance, self.octree, self.seed = steps, guidance, octree_resolution, seed

    def _mesh_tile(self, transformer: nn.Module, visual: torch.Tensor, label: torch.Tensor | None) -> np.ndarray:
        from ...meshing.cleanup import vertex_normals
        from ...neural.geometry.pipeline import Step1X3DGeometryPipeline
        from .render import render_view

        pipe = Step1X3DGeometryPipeline(transformer, self.vae, None, self.scheduler)  # type: ignore[arg-type]
        pipe._device = self.device
        cond = transformer.assemble_condition(visual, label)  # type: ignore[operator]
        uncond = transformer.assemble_condition(torch.zeros_like(visual),  # type: ignore[operator]
                                                torch.zeros_like(label) if label is not None else None)
        noise = torch.randn(1, *self.vae.latent_shape, generator=torch.Generator().manual_seed(self.seed))
        with torch.no_grad():
            latents = pipe.sample(torch.cat([uncond, cond]), noise.to(self.device), self.steps, self.guidance)
            verts, faces = pipe.extract(pipe.decode(latents), octree_resolution=self.octree)
        if len(faces) == 0:
            tile = np.full((TILE, TILE, 3), 235, np.uint8)
            ImageDraw.Draw(img := Image.fromarray(tile)).text((8, TILE // 2), "no surface", fill=(120, 0, 0))
            return np.asarray(img)
        verts = np.asarray(verts, np.float64)
        normals = np.asarray(vertex_normals(verts, faces), np.float32)
        return render_view(verts, np.asarray(faces, np.int64), normals, None, VIEW, TILE)[..., :3]

    def write(self, transformer: nn.Module, label: torch.Tensor | None, path: Path, step: int) -> Path:
        was_training = transformer.training
        transformer.eval()
        rows = []
        try:
            for i in self.indices:
                _, visual = self.data.load(i)
                tokens = torch.from_numpy(visual[0].astype(np.float32))[None].to(self.device)
                lab = label.to(self.device) if label is not None else None
                with np.load(self.data.folder / self.data.objects[i]["file"]) as stored:
                    preview = np.asarray(Image.fromarray(stored["preview"][0]).resize((TILE, TILE)))
                set_lora_enabled(transformer, False)
                base = self._mesh_tile(transformer, tokens, lab)
                set_lora_enabled(transformer, True)
                tuned = self._mesh_tile(transformer, tokens, lab)
                note = "held out" if self.held_out else "a training object: no held-out split"
                rows.append((f"{self.data.objects[i]['source']} ({note})", [preview, base, tuned]))
        finally:
            set_lora_enabled(transformer, True)
            transformer.train(was_training)
        return _compose(rows, path, step)


def _compose(rows: list[tuple[str, list[np.ndarray]]], path: Path, step: int) -> Path:
    header = 22
    sheet = Image.new("RGB", (3 * TILE, header + len(rows) * (TILE + 14)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for col, title in enumerate(("condition", "base model", f"LoRA, step {step}")):
        draw.text((col * TILE + 6, 5), title, fill=(0, 0, 0))
    for r, (name, tiles) in enumerate(rows):
        y = header + r * (TILE + 14)
        draw.text((6, y), name[:78], fill=(80, 80, 80))
        for c, tile in enumerate(tiles):
            sheet.paste(Image.fromarray(np.ascontiguousarray(tile)), (c * TILE, y + 12))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())
    return path


__all__: list[Any] = ["ValidationSheet", "set_lora_enabled"]

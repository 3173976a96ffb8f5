"""How long ``step1x3d weights check`` takes on a full-size weights folder.

No real weights are needed: every file is written with the full-size models' tensor names and
shapes in its safetensors header and a *sparse* data region (the file has its full length but
occupies no disk), which is all the check reads. The layout is the one ``weights fetch`` writes:
both geometry models, the texture adapter, SDXL base (fp16 files) and the fp16-fix VAE.

    python benchmarks/weights_check.py [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.full_size import (  # noqa: E402
    GEOMETRY_TRANSFORMERS,
    GEOMETRY_VAE,
    SDXL_SCHEDULER,
    SDXL_TEXT_ENCODERS,
    SDXL_UNET,
    SDXL_VAE,
)

DTYPES = {torch.float32: ("F32", 4), torch.float16: ("F16", 2), torch.bfloat16: ("BF16", 2), torch.int64: ("I64", 8)}


def sparse_safetensors(path: Path, shapes: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> int:
    """A safetensors file with this header and a hole for its data; returns its apparent size."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (shape, dtype) in sorted(shapes.items()):
        code, size = DTYPES[dtype]
        n = size
        for s in shape:
            n *= s
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return 8 + len(raw) + offset


def module_shapes(module: torch.nn.Module, dtype: torch.dtype, official: bool = True) -> dict[str, Any]:
    from inference_server.neural.geometry.loader import official_state_dict

    state = official_state_dict(module) if official else module.state_dict()
    return {k: (tuple(v.shape), dtype if v.is_floating_point() else v.dtype) for k, v in state.items()}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def build_layout(root: Path) -> int:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from inference_server.neural.geometry.configs import (
        LabelEncoderConfig,
        ShapeVAEConfig,
        TransformerConfig,
        VisualEncoderConfig,
    )
    from inference_server.neural.geometry.models.condition import ImageConditionEncoder, LabelEncoder
    from inference_server.neural.geometry.models.transformer import Step1X3DTransformer
    from inference_server.neural.geometry.models.vae import ShapeVAE
    from inference_server.neural.texture.models import build_geometry_adapter, install_mv_processors
    from inference_server.weights.layout import GEOMETRY_FOLDERS, SDXL_FOLDER, SDXL_VAE_FOLDER

    total = 0
    for kind, folder in GEOMETRY_FOLDERS.items():
        model = root / folder
        t_cfg = TransformerConfig(**GEOMETRY_TRANSFORMERS[kind])
        v_cfg = ShapeVAEConfig(**GEOMETRY_VAE)
        e_cfg = VisualEncoderConfig(image_size=518)
        with init_empty_weights(include_buffers=False):
            parts: dict[str, tuple[Any, torch.nn.Module]] = {
                "transformer": (t_cfg, Step1X3DTransformer(t_cfg)),
                "vae": (v_cfg, ShapeVAE(v_cfg)),
                "visual_encoder": (e_cfg, ImageConditionEncoder(e_cfg, None, kind == "label")),
            }
            if kind == "label":
                parts["label_encoder"] = (LabelEncoderConfig(), LabelEncoder(LabelEncoderConfig()))
        for name, (cfg, module) in parts.items():
            write_json(model / name / "config.json", dataclasses.asdict(cfg))
            total += sparse_safetensors(model / name / "diffusion_pytorch_model.safetensors",
                                        module_shapes(module, torch.float32))
        write_json(model / "scheduler" / "scheduler_config.json",
                   {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0})

    sdxl = root / SDXL_FOLDER
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(SDXL_UNET)
        vae = AutoencoderKL.from_config(SDXL_VAE)
    write_json(sdxl / "unet" / "config.json", dict(unet.config))
    total += sparse_safetensors(sdxl / "unet" / "diffusion_pytorch_model.fp16.safetensors",
                                module_shapes(unet, torch.float16, official=False))
    for name, cfg in SDXL_TEXT_ENCODERS.items():
        config = CLIPTextConfig(**cfg)
        with init_empty_weights():
            enc = (CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel)(config)
        write_json(sdxl / name / "config.json", config.to_dict())
        total += sparse_safetensors(sdxl / name / "model.fp16.safetensors", module_shapes(enc, torch.float16, False))
    for tok in ("tokenizer", "tokenizer_2"):
        for f in ("vocab.json", "merges.txt", "tokenizer_config.json"):
            (sdxl / tok).mkdir(parents=True, exist_ok=True)
            (sdxl / tok / f).write_text("{}")
    write_json(sdxl / "scheduler" / "scheduler_config.json", SDXL_SCHEDULER)
    write_json(root / SDXL_VAE_FOLDER / "config.json", dict(vae.config))
    total += sparse_safetensors(root / SDXL_VAE_FOLDER / "diffusion_pytorch_model.safetensors",
                                module_shapes(vae, torch.float32, official=False))
    install_mv_processors(unet, device="meta", dtype=torch.float32)
    with torch.device("meta"):
        adapter = build_geometry_adapter(unet.config)
    shapes = {k: v for k, v in module_shapes(unet, torch.float32, False).items() if ".processor." in k}
    shapes.update(module_shapes(adapter, torch.float32, False))
    total += sparse_safetensors(root / "Step1X-3D-Texture" / "step1x-3d-ig2v.safetensors", shapes)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="write the layout here and keep it")
    args = parser.parse_args()
    from inference_server.weights.check import check_folder

    root = args.keep or Path(tempfile.mkdtemp(prefix="weights_check_"))
    try:
        apparent = build_layout(root)
        times, problems = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            problems = check_folder(root)
            times.append(time.perf_counter() - t0)
        print("| layout | files' apparent size | problems | check time (median of %d) |" % args.repeats)
        print("|---|---|---|---|")
        print(f"| full-size, both geometry models + texture | {apparent / 1e9:.1f} GB | {len(problems)} | "
              f"{statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}) |")
        for line in problems:
            print(line)
        return 1 if problems else 0
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

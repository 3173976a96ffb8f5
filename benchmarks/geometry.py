"""Benchmark: the Step1X-3D geometry stage at full size with random weights (GPU only).

    python benchmarks/geometry.py                        # base model, bf16, 50 steps, octree 384
    python benchmarks/geometry.py --model label --compile --vae-dtype bfloat16
    python benchmarks/geometry.py --tiny                 # tiny configs: checks the script anywhere

Builds the full-size modules straight on the GPU with random weights (the DINOv2-L/14-reg image
encoder, plus CLIP ViT-L/14 and the label tables for ``--model label``; the flow transformer;
the shape VAE) and times: the condition encoding, seconds per sampling step and the whole
50-step rectified-flow loop with CFG (one batched [uncond, cond] forward per step), the VAE's
latent decoding, and hierarchical extraction at octree 384, plus peak GPU memory per phase.

Extraction: a random VAE's field is noise, which would send the extractor everywhere. So the
extractor is driven by an analytic sphere (radius 0.8, the size of a typical object) while
every batch of points it asks for is also pushed through the real full-size decoder: the
number of points and the decoder's cost are what a real shape costs.
Without CUDA (and without ``--tiny``) it prints "no GPU" and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.full_size import GEOMETRY_TRANSFORMERS as FULL_TRANSFORMERS  # noqa: E402
from benchmarks.full_size import GEOMETRY_VAE as FULL_VAE  # noqa: E402

TINY_TRANSFORMER: dict[str, Any] = dict(input_channels=8, width=64, layers=1, num_single_layers=1, num_heads=2,
                        condition_dim=64, use_visual_condition=True, visual_condition_dim=64)
TINY_VAE: dict[str, Any] = dict(use_downsample=True, num_latents=16, embed_dim=8, point_feats=3, num_freqs=8, include_pi=False,
                heads=2, width=64, num_encoder_layers=1, num_decoder_layers=1, use_ln_post=True, qkv_bias=False)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("base", "label"), default="base")
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    p.add_argument("--vae-dtype", choices=("bfloat16", "float16", "float32"), default="float32")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--octree", type=int, default=384)
    p.add_argument("--dino-size", type=int, default=518,
                   help="DINO input size (the checkpoint's visual_encoder/config.json image_size)")
    p.add_argument("--compile", action="store_true", help="time the transformer under torch.compile too")
    p.add_argument("--tiny", action="store_true", help="tiny configs (checks the script on any device)")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    import torch

    if not torch.cuda.is_available() and not args.tiny:
        print("no GPU: benchmarks/geometry.py needs CUDA (use --tiny to check the script on the CPU)")
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = run(args, device)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


class Clock:
    def __init__(self, device: Any) -> None:
        self.device = device

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gb(self) -> float:
        import torch

        return round(torch.cuda.max_memory_allocated(self.device) / 1024**3, 2) if self.device.type == "cuda" else 0.0


def build_models(args: argparse.Namespace, device: Any, dtype: Any, vae_dtype: Any) -> dict[str, Any]:
    import torch

    from inference_server.neural.geometry.configs import (
        LabelEncoderConfig,
        ShapeVAEConfig,
        TransformerConfig,
        VisualEncoderConfig,
    )
    from inference_server.neural.geometry.models.condition import ImageConditionEncoder, LabelEncoder
    from inference_server.neural.geometry.models.transformer import Step1X3DTransformer
    from inference_server.neural.geometry.models.vae import ShapeVAE

    label = args.model == "label"
    t_cfg = dict(TINY_TRANSFORMER if args.tiny else FULL_TRANSFORMERS[args.model])
    if args.tiny and label:
        t_cfg.update(use_label_condition=True, label_condition_dim=64)
    with torch.device(device):
        transformer = Step1X3DTransformer(TransformerConfig(**t_cfg)).to(dtype).eval()
        vae = ShapeVAE(ShapeVAEConfig(**(TINY_VAE if args.tiny else FULL_VAE))).to(vae_dtype).eval()
        models: dict[str, Any] = {"transformer": transformer, "vae": vae}
        if not args.tiny:
            # Published presets: DINOv2-L/14-reg (+ CLIP ViT-L/14 at 224 for the Label model).
            enc = ImageConditionEncoder(VisualEncoderConfig(image_size=args.dino_size), None, label)
            models["visual_encoder"] = enc.to(dtype).eval()
            if label:
                models["label_encoder"] = LabelEncoder(LabelEncoderConfig()).to(dtype).eval()
    for m in models.values():
        m.requires_grad_(False)
    return models


def run(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    import numpy as np
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler
    from PIL import Image

    from inference_server.meshing.extract import extract_surface
    from inference_server.neural.geometry.pipeline import _tf32_matmul, octree_coarse
    from inference_server.neural.geometry.sampling import flow_schedule, sample_flow
    from inference_server.neural.geometry.surface import LatentField

    dtype, vae_dtype = getattr(torch, args.dtype), getattr(torch, args.vae_dtype)
    clock = Clock(device)
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                           "model": args.model, "dtype": args.dtype, "vae_dtype": args.vae_dtype,
                           "steps": args.steps, "octree": args.octree, "tiny": args.tiny,
                           "torch": torch.__version__}
    torch.manual_seed(0)
    models = build_models(args, device, dtype, vae_dtype)
    out["params_m"] = {k: round(sum(p.numel() for p in m.parameters()) / 1e6, 1) for k, m in models.items()}
    transformer, vae = models["transformer"], models["vae"]

    # 1. condition
    clock.reset_peak()
    if "visual_encoder" in models:
        enc = models["visual_encoder"]
        img = Image.fromarray(np.full((1024, 1024, 3), 200, np.uint8))
        with torch.no_grad():
            enc.encode([img])  # warm-up
            clock.sync()
            t0 = time.perf_counter()
            visual = enc.encode([img])
            clock.sync()
        out["condition_s"] = round(time.perf_counter() - t0, 4)
        uncond = enc.unconditional(1)
        labels = uncond_labels = None
        if "label_encoder" in models:
            labels = models["label_encoder"].encode([{"symmetry": "x", "edge_type": "sharp"}])
            uncond_labels = models["label_encoder"].unconditional(1)
        cond = torch.cat([transformer.assemble_condition(uncond, uncond_labels),
                          transformer.assemble_condition(visual, labels)])
    else:
        width = transformer.config.condition_dim
        tokens = [torch.randn(2, 10, width, device=device, dtype=dtype)]
        if transformer.config.use_label_condition:
            tokens.append(torch.randn(2, 3, width, device=device, dtype=dtype))
        cond = transformer.assemble_condition(*tokens)
    out["condition_tokens"] = int(cond.shape[1])
    out["condition_peak_gb"] = clock.peak_gb()

    # 2. sampling
    schedule = flow_schedule(FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000), args.steps)
    shape = (1, vae.config.num_latents, vae.config.embed_dim)

    def sample_with(model: Any, label: str) -> torch.Tensor:
        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model(x, t, condition=cond)

        with torch.no_grad():
            warm = schedule_prefix(schedule, 3)
            sample_flow(velocity, torch.randn(shape, device=device), warm, args.guidance)  # warm-up / compile
            clock.sync()
            clock.reset_peak()
            t0 = time.perf_counter()
            x = sample_flow(velocity, torch.randn(shape, device=device, generator=None), schedule, args.guidance)
            clock.sync()
        total = time.perf_counter() - t0
        forwards = max(1, schedule.steps - 1)  # the first step needs no forward (zero velocity)
        out[f"sampling{label}_s"] = round(total, 3)
        out[f"step{label}_s"] = round(total / forwards, 4)
        out[f"sampling{label}_peak_gb"] = clock.peak_gb()
        return x

    latents = sample_with(transformer, "")
    if args.compile:
        sample_with(torch.compile(transformer, dynamic=False), "_compiled")

    # 3. decode
    with torch.no_grad():
        vae.decode(latents)
        clock.sync()
        clock.reset_peak()
        t0 = time.perf_counter()
        decoded = vae.decode(latents)
        clock.sync()
    out["decode_s"] = round(time.perf_counter() - t0, 4)

    # 4. extraction: analytic sphere drives the octree, the real decoder does the work.
    field = LatentField(vae, decoded)
    decoder_time = [0.0]

    def timed_sphere(points: np.ndarray) -> np.ndarray:
        pts = torch.from_numpy(points).to(device)
        clock.sync()
        t = time.perf_counter()
        field.evaluate(pts)
        clock.sync()
        decoder_time[0] += time.perf_counter() - t
        return (0.8 - np.linalg.norm(points, axis=1)).astype(np.float32) * 10.0

    clock.reset_peak()
    t0 = time.perf_counter()
    with _tf32_matmul(device):
        verts, faces = extract_surface(timed_sphere, bounds=1.05, resolution=args.octree,
                                       coarse_resolution=octree_coarse(args.octree), band=0.95,
                                       batch_size=max(field.chunk_size, 262_144))
    out["extract_s"] = round(time.perf_counter() - t0, 3)
    out["extract_decoder_s"] = round(decoder_time[0], 3)
    out["extract_points_m"] = round(field.points_evaluated / 1e6, 2)
    out["extract_chunk"] = field.chunk_size
    out["extract_peak_gb"] = clock.peak_gb()
    out["faces"] = int(len(faces))
    out["geometry_total_s"] = round(out.get("condition_s", 0.0) + out["sampling_s"] + out["decode_s"]
                                    + out["extract_s"], 3)
    return out


def schedule_prefix(schedule: Any, steps: int) -> Any:
    """The first ``steps`` steps of ``schedule`` (warm-up runs)."""
    from inference_server.neural.geometry.sampling import FlowSchedule

    return FlowSchedule(schedule.timesteps[:steps], schedule.sigmas[: steps + 1])


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the Step1X-3D texture stage at full size with random weights (GPU only).

    python benchmarks/texture.py                       # 768^2 views, 50 steps, CFG 3, bf16
    python benchmarks/texture.py --dtype float16 --offload stages --faces 200000

Builds SDXL-shaped models with random weights straight on the GPU (the SDXL base UNet with the
MV-Adapter processors and the 6-channel geometry adapter: 900.6 M adapter parameters; the SDXL
VAE; random prompt embeddings in place of the text encoders, whose output the stage caches
anyway) and times the sub-stages of ``TextureStage.run`` on a bumpy sphere:
conditioning renders, multi-view diffusion (incl. the reference pass and the six VAE decodes),
bake and hole filling, PBR maps. Prints seconds per sub-stage and the peak GPU memory.
Goal (issue 7): the whole stage under 15 s on an H200 and under 20 GB peak.
Without CUDA it prints "no GPU" and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.full_size import SDXL_SCHEDULER, SDXL_UNET, SDXL_VAE  # noqa: E402


def bumpy_sphere(faces_target: int):  # -> MeshData
    """A closed blob with some relief, about ``faces_target`` faces (icosphere levels: 20 * 4^k)."""
    import numpy as np
    import trimesh

    from inference_server.assets import MeshData

    level = 1
    while 20 * 4 ** (level + 1) <= faces_target:
        level += 1
    sphere = trimesh.creation.icosphere(subdivisions=level)
    v = sphere.vertices
    rng = np.random.default_rng(0)
    bump = sum(0.05 * np.cos(v @ (rng.normal(size=3) * 2.5) + rng.uniform(0, 6.28)) for _ in range(8))
    return MeshData((v * (1.0 + bump)[:, None]).astype(np.float32), sphere.faces.astype(np.uint32))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--resolution", type=int, default=768)
    parser.add_argument("--faces", type=int, default=50_000)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--offload", default="none", choices=["none", "stages"])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="run the same code on the CPU with tiny models (checks the script, times nothing useful)")
    args = parser.parse_args()

    import torch

    unet_config, vae_config, embed_width, pooled_width = SDXL_UNET, SDXL_VAE, 2048, 1280
    if args.cpu_smoke:
        unet_config = {**SDXL_UNET, "block_out_channels": [16, 32, 32], "transformer_layers_per_block": [1, 1, 2],
                       "attention_head_dim": [2, 4, 4], "cross_attention_dim": 64, "addition_time_embed_dim": 8,
                       "projection_class_embeddings_input_dim": 80, "norm_num_groups": 8, "layers_per_block": 1}
        vae_config = {**SDXL_VAE, "block_out_channels": [8, 16, 16, 16], "norm_num_groups": 8, "layers_per_block": 1}
        embed_width, pooled_width = 64, 32
        args.dtype, args.steps, args.resolution, args.faces, args.texture_size = "float32", 2, 64, 2000, 512
    elif not torch.cuda.is_available():
        print("no GPU: benchmarks/texture.py needs CUDA (the tests cover the CPU path)")
        return 0

    import numpy as np
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from inference_server.neural.texture.bake import bake_texture
    from inference_server.neural.texture.conditioning import (
        gpu_kernels_available, mv_views, prepare_reference, prepare_view_mesh, render_geometry,
    )
    from inference_server.neural.texture.loading import TextureModels
    from inference_server.neural.texture.models import build_geometry_adapter, install_mv_processors
    from inference_server.neural.texture.pipelines.multiview_sdxl import MultiViewSDXL, PromptEmbeds
    from inference_server.neural.texture.scheduler import make_shifted_ddpm
    from inference_server.texturing.pbr import build_material
    from inference_server.uv.atlas import unwrap

    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    dtype = getattr(torch, args.dtype)
    torch.backends.cuda.matmul.allow_tf32 = True
    figures: dict[str, float | str] = {"device": "cpu (smoke)" if args.cpu_smoke else torch.cuda.get_device_name(device), "dtype": args.dtype,
                                       "steps": args.steps, "resolution": args.resolution, "faces": args.faces,
                                       "texture_size": args.texture_size, "offload": args.offload}

    t = time.perf_counter()
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_config).to(dtype)
        install_mv_processors(unet, device=device, dtype=dtype)
        cond_encoder = build_geometry_adapter(unet.config).to(dtype)
        vae = AutoencoderKL(**vae_config).to(dtype)
    for module in (unet, cond_encoder, vae):
        module.eval().requires_grad_(False)
    models = TextureModels(unet=unet, cond_encoder=cond_encoder, vae=vae, text_encoder=None, text_encoder_2=None,  # type: ignore[arg-type]
                           tokenizer=None, tokenizer_2=None, scheduler=make_shifted_ddpm(SDXL_SCHEDULER))  # type: ignore[arg-type]
    pipe = MultiViewSDXL(models, device, dtype, staged=args.offload == "stages")
    g = torch.Generator().manual_seed(0)
    pipe.set_prompt_embeds(PromptEmbeds(
        torch.randn(1, 77, embed_width, generator=g), torch.randn(1, 77, embed_width, generator=g),
        torch.randn(1, pooled_width, generator=g), torch.randn(1, pooled_width, generator=g)))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    figures["build_models_s"] = time.perf_counter() - t
    figures["adapter_params"] = float(sum(p.numel() for n, p in unet.named_parameters() if ".processor." in n)
                                      + sum(p.numel() for p in cond_encoder.parameters()))

    t = time.perf_counter()
    mesh = unwrap(bumpy_sphere(args.faces), texture_size=args.texture_size)
    figures["uv_atlas_s (not part of the stage for meshes with UVs)"] = time.perf_counter() - t
    image = np.zeros((1024, 1024, 4), np.uint8)
    image[200:850, 300:700] = (180, 90, 60, 255)
    kernel_device = "cuda" if gpu_kernels_available(str(device)) else None
    figures["kernels"] = "triton" if kernel_device else "cpu (numba)"

    def conditioning() -> tuple:
        view_mesh = prepare_view_mesh(mesh.positions, mesh.faces)
        views = mv_views()
        control, _ = render_geometry(view_mesh, views, args.resolution, kernel_device)
        return prepare_reference(image, args.resolution), view_mesh, views, control

    def diffusion(reference: np.ndarray, control: np.ndarray, steps: int) -> torch.Tensor:
        return pipe(reference, torch.from_numpy(control), num_inference_steps=steps, guidance_scale=args.guidance,
                    generator=torch.Generator().manual_seed(1))

    reference, view_mesh, views, control = conditioning()
    diffusion(reference, control, 2)  # warm-up: kernels, cuDNN and allocator
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    total = time.perf_counter()
    t = time.perf_counter()
    reference, view_mesh, views, control = conditioning()
    figures["conditioning_renders_s"] = time.perf_counter() - t
    t = time.perf_counter()
    images = diffusion(reference, control, args.steps)
    sync()
    figures["diffusion_s"] = time.perf_counter() - t
    if device.type == "cuda":
        figures["peak_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 1024**3
        figures["peak_reserved_gb"] = torch.cuda.max_memory_reserved(device) / 1024**3
    t = time.perf_counter()
    assert mesh.uvs is not None
    texture, coverage = bake_texture(view_mesh, mesh.uvs, images.numpy(), views, args.texture_size,
                                     kernel_device=kernel_device)
    figures["bake_and_fill_s"] = time.perf_counter() - t
    figures["coverage"] = coverage
    t = time.perf_counter()
    build_material(mesh, texture, pbr=True)
    figures["pbr_maps_s"] = time.perf_counter() - t
    figures["stage_total_s"] = time.perf_counter() - total

    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

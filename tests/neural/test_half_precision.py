"""Both neural stages in bf16 and fp16 on the CPU: no dtype mismatch anywhere, finite results close to fp32.

No GPU is lent in CI, but the half-precision code paths (casts at the model boundaries, the fp32
VAE decode of the geometry stage, the texture VAE) are the same on the CPU, so a dtype slip
shows here. Tolerances are loose: tiny random-weight models amplify rounding less predictably
than trained ones; the point is "same result up to rounding", not a quality figure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "geometry"), str(HERE / "texture")]  # the tiny-model builders of both stages

HALF = [("bf16", torch.bfloat16), ("fp16", torch.float16)]


@pytest.fixture(scope="module")
def geometry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from geometry_tiny_models import write_tiny_repo

    return write_tiny_repo(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def texture_weights(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from texture_tiny_models import build_tiny_weights

    return build_tiny_weights(tmp_path_factory.mktemp("texture_weights"))


def reference_image() -> np.ndarray:
    rgba = np.zeros((96, 96, 4), np.uint8)
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 48) ** 2 + (xx - 48) ** 2 < 30**2
    rgba[disc] = (200, 80, 40, 255)
    return rgba


@pytest.mark.parametrize("name,dtype", HALF)
def test_geometry_latents_and_field_in_half_precision(geometry_root: Path, name: str, dtype: torch.dtype) -> None:
    from inference_server.neural.geometry import Step1X3DGeometryPipeline
    from inference_server.neural.geometry.surface import LatentField

    def run(torch_dtype: str) -> tuple[torch.Tensor, np.ndarray]:
        pipe = Step1X3DGeometryPipeline.from_pretrained(geometry_root, subfolder="Step1X-3D-Geometry-1300m",
                                                        torch_dtype=torch_dtype)
        assert next(pipe.transformer.parameters()).dtype == (torch.float32 if torch_dtype == "fp32" else dtype)
        latents = pipe(reference_image(), num_inference_steps=4, generator=torch.Generator().manual_seed(3),
                       output_type="latent").mesh[0]
        decoded = pipe.decode(latents[None])
        points = np.random.default_rng(0).uniform(-1, 1, (400, 3)).astype(np.float32)
        return latents, LatentField(pipe.vae, decoded, chunk_size=128)(points)

    ref_latents, ref_field = run("fp32")
    latents, field = run(name)
    assert latents.dtype == torch.float32  # handed out in fp32 whatever ran inside
    assert torch.isfinite(latents).all() and np.isfinite(field).all()
    # Same sampling trajectory up to rounding: far closer than two seeds are.
    other_seed = Step1X3DGeometryPipeline.from_pretrained(geometry_root, subfolder="Step1X-3D-Geometry-1300m")(
        reference_image(), num_inference_steps=4, generator=torch.Generator().manual_seed(4), output_type="latent").mesh[0]
    assert (latents - ref_latents).abs().mean() < 0.25 * (other_seed - ref_latents).abs().mean()
    assert np.abs(field - ref_field).mean() < 0.1 * max(np.abs(ref_field).mean(), 1e-3) + 1e-2


@pytest.mark.parametrize("name,dtype", HALF)
def test_texture_views_in_half_precision(texture_weights: dict, name: str, dtype: torch.dtype) -> None:
    from inference_server.neural.texture import TextureStage

    ref = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    control = torch.rand(6, 6, 64, 64, generator=torch.Generator().manual_seed(0))

    def views(dtype_name: str, seed: int = 5) -> torch.Tensor:
        stage = TextureStage.from_paths(texture_weights["adapter_file"], texture_weights["sdxl_dir"],
                                        texture_weights["vae_dir"], dtype=dtype_name, device="cpu", resolution=64,
                                        bake_resolution=128)
        pipe = stage.load()
        assert pipe.models.unet.dtype == (torch.float32 if dtype_name == "float32" else dtype)
        return pipe(ref, control, num_inference_steps=3, guidance_scale=3.0,
                    generator=torch.Generator().manual_seed(seed))

    full = views("float32")
    half = views(name)
    assert half.dtype == torch.float32 and half.shape == full.shape
    assert torch.isfinite(half).all() and half.min() >= 0 and half.max() <= 1
    other_seed = views("float32", seed=6)
    assert (half - full).abs().mean() < 0.25 * (other_seed - full).abs().mean()

"""Loading from local folders: the adapter file strictly, SDXL and the VAE with clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmarks.full_size import SDXL_UNET as SDXL_UNET_CONFIG
from inference_server.neural.texture.loading import load_models
from inference_server.neural.texture.models import build_geometry_adapter, install_mv_processors
from inference_server.pipeline.base import PipelineError


def test_official_layout_at_sdxl_size_has_the_published_parameter_count() -> None:
    """70 self-attention layers x (q, k, v, out) x (mv, ref) + the 6-channel full_adapter_xl =
    900,606,400 parameters, the size of step1x-3d-ig2v.safetensors."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET_CONFIG)
        processors = install_mv_processors(unet)
        adapter = build_geometry_adapter(unet.config)
    assert sum(name.endswith("attn1.processor") for name in processors) == 70
    state = {k: v for k, v in unet.state_dict().items() if ".processor." in k}
    state.update(adapter.state_dict())
    assert len(state) == 70 * 10 + 38
    assert sum(v.numel() for v in state.values()) == 900_606_400
    assert all(k.startswith("adapter.") for k in adapter.state_dict())


def test_every_adapter_key_is_loaded(tiny_weights: dict) -> None:
    models = load_models(tiny_weights["adapter_file"], tiny_weights["sdxl_dir"], tiny_weights["vae_dir"], torch.float32)
    file_state = load_file(str(tiny_weights["adapter_file"]))
    unet_state = models.unet.state_dict()
    adapter_state = models.cond_encoder.state_dict()
    for key, tensor in file_state.items():
        loaded = unet_state[key] if key in unet_state else adapter_state[key]
        assert torch.equal(loaded, tensor), key
    assert not any(p.is_meta for p in models.unet.parameters())
    assert not any(p.is_meta for p in models.cond_encoder.parameters())
    assert {k for k in unet_state if ".processor." in k} | set(adapter_state) == set(file_state)


def _broken_copy(tiny_weights: dict, tmp_path: Path, change) -> Path:
    state = load_file(str(tiny_weights["adapter_file"]))
    change(state)
    path = tmp_path / "step1x-3d-ig2v.safetensors"
    save_file(state, str(path))
    return path


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda s: s.pop(next(k for k in s if k.endswith("to_k_ref.weight"))), "1 missing"),
        (lambda s: s.pop("adapter.conv_in.bias"), "1 missing"),
        (lambda s: s.__setitem__("adapter.extra.weight", torch.zeros(1)), "1 unexpected"),
        (lambda s: s.__setitem__(next(k for k in s if k.endswith("to_q_mv.weight")), torch.zeros(3, 3)), "shape"),
    ],
)
def test_adapter_file_is_checked_strictly(tiny_weights: dict, tmp_path: Path, change, message: str) -> None:
    path = _broken_copy(tiny_weights, tmp_path, change)
    with pytest.raises(PipelineError, match=message) as info:
        load_models(path, tiny_weights["sdxl_dir"], tiny_weights["vae_dir"], torch.float32)
    assert info.value.code == "weights_missing"


def test_missing_folders_give_clear_errors(tiny_weights: dict, tmp_path: Path) -> None:
    adapter, sdxl, vae = tiny_weights["adapter_file"], tiny_weights["sdxl_dir"], tiny_weights["vae_dir"]
    cases = [
        ((adapter, tmp_path / "nope", vae), "SDXL base folder not found"),
        ((adapter, sdxl, tmp_path / "nope"), "SDXL VAE folder not found"),
        ((tmp_path / "none.safetensors", sdxl, vae), "texture adapter not found"),
    ]
    partial = tmp_path / "partial"
    shutil.copytree(sdxl, partial)
    shutil.rmtree(partial / "text_encoder_2")
    cases.append(((adapter, partial, vae), "no 'text_encoder_2/' subfolder"))
    for args, message in cases:
        with pytest.raises(PipelineError, match=message) as info:
            load_models(*args, torch.float32)
        assert info.value.code == "weights_missing"


def test_vae_folder_may_hold_a_vae_subfolder(tiny_weights: dict, tmp_path: Path) -> None:
    parent = tmp_path / "sdxl-vae-fp16-fix"
    shutil.copytree(tiny_weights["vae_dir"], parent / "vae")
    models = load_models(tiny_weights["adapter_file"], tiny_weights["sdxl_dir"], parent, torch.float32)
    assert models.vae.config.latent_channels == 4

"""Two gloo processes under torchrun train the same texture LoRA as one process with the same global batch."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from .texture_helpers import RESOLUTION, tiny_weights, write_assets
from .torchrun import CLI, torchrun


@pytest.mark.slow  # two fresh Python processes importing torch, diffusers and transformers (~20-40 s on 2 cores)
def test_two_gloo_ranks_equal_one_process(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from inference_server.finetune.texture.prepare import TexturePrepareOptions, prepare_textures
    from inference_server.finetune.texture.trainer import load_texture_config, train_texture

    w = tiny_weights(tmp_path / "weights")
    data = prepare_textures(write_assets(tmp_path / "assets"), tmp_path / "prepared", w["vae_dir"],
                            TexturePrepareOptions(resolution=RESOLUTION), log=lambda _l: None).out
    paths = dict(base=str(w["adapter_file"].parent), sdxl_dir=str(w["sdxl_dir"]), vae_dir=str(w["vae_dir"]),
                 data=str(data))
    single = train_texture(load_texture_config(None, out=str(tmp_path / "one"), rank=4, steps=3, batch=4, lr=1e-2,
                                               seed=5, validation_objects=0, **paths), stream=io.StringIO())
    out = tmp_path / "two"
    proc = torchrun(CLI, ["finetune", "texture", "--base", paths["base"], "--sdxl-dir", paths["sdxl_dir"],
                          "--sdxl-vae-dir", paths["vae_dir"], "--data", paths["data"], "--out", str(out), "--rank", "4",
                          "--steps", "3", "--batch", "4", "--lr", "1e-2", "--seed", "5", "--device", "cpu",
                          "--validation-objects", "0"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("LoRA written to") == 1  # only rank 0 reports (and writes)
    a, b = load_file(str(single.lora)), load_file(str(out / "two.safetensors"))
    assert a.keys() == b.keys()
    moved = 0
    for key in a:
        # Same per-sample draws and dropouts; DDP averages the two halves' gradients (then the same
        # clipping): equal up to summation order. Adam divides by the gradient's own size, so a 1e-7
        # difference in a near-zero gradient can show as ~2e-6 in its weight (measured: 1 of 128
        # elements of one tensor); the weights themselves are ~1e-1, so 1e-5 is still 1e-4 relative.
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
        moved += int(key.endswith("lora_B.weight") and bool(a[key].abs().max() > 0))
    assert moved > 0  # B starts at zero: the comparison is of trained weights, not of initialisations

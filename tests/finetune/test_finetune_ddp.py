"""Two gloo processes under torchrun train the same LoRA as one process with the same global batch
(with a held-out object, so the split and the validation loss are the same on both too)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from .torchrun import CLI, torchrun


@pytest.mark.slow  # two fresh Python processes importing torch, diffusers and transformers (~20-40 s on 2 cores)
def test_two_gloo_ranks_equal_one_process(tiny_model: Path, prepared: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from inference_server.finetune.geometry.trainer import load_geometry_config, train_geometry

    common = dict(rank=4, steps=4, batch=2, lr=3e-3, checkpoint_every=100, seed=5, validation_objects=0,
                  validation_holdout=1)
    single = train_geometry(load_geometry_config(None, base=str(tiny_model), data=str(prepared),
                                                 out=str(tmp_path / "one"), **common), stream=io.StringIO())
    out = tmp_path / "two"
    proc = torchrun(CLI, ["finetune", "geometry", "--base", str(tiny_model), "--data", str(prepared), "--out", str(out),
                          "--rank", "4", "--steps", "4", "--batch", "2", "--lr", "3e-3", "--seed", "5", "--device", "cpu",
                          "--validation-objects", "0", "--holdout", "1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("LoRA written to") == 1  # only rank 0 reports (and writes)
    a, b = load_file(str(single.lora)), load_file(str(out / "two.safetensors"))
    assert a.keys() == b.keys()
    moved = 0
    for key in a:
        # Same draws per sample, DDP averages the two halves' gradients: equal up to summation order.
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)
        moved += int(key.endswith("lora_B.weight") and bool(a[key].abs().max() > 0))
    assert moved > 0  # B starts at zero: the comparison is of trained weights, not of initialisations
    from inference_server.finetune.losslog import read_val_losses
    from inference_server.finetune.lorafile import read_metadata

    one, two = read_val_losses(single.lora.parent / "loss.csv"), read_val_losses(out / "loss.csv")
    assert [s for s, _ in one] == [s for s, _ in two] == [4]
    assert two[0][1] == pytest.approx(one[0][1], rel=1e-4)
    assert read_metadata(out / "two.safetensors")["step1x3d"]["data"]["split"] == \
        read_metadata(single.lora)["step1x3d"]["data"]["split"]

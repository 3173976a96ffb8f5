"""The texture trainer's validation sheet and held-out split, on the tiny SDXL-shaped models.

A short run on four assets with one held out: the held-out asset never trains, its loss on fixed
draws is logged at each checkpoint, and at each checkpoint ``validation/step-XXXXXXXX.png`` shows it
(reference, six generated views, baked texture) with the LoRA off and on.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from .texture_helpers import RESOLUTION, tiny_weights, write_assets

RUN = dict(rank=4, steps=4, batch=2, lr=5e-2, checkpoint_every=2, seed=0, validation_objects=1, validation_steps=2,
           validation_texture_size=64, validation_holdout=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    from inference_server.finetune.texture.prepare import TexturePrepareOptions, prepare_textures
    from inference_server.finetune.texture.trainer import load_texture_config, train_texture

    root = tmp_path_factory.mktemp("texture_sheet")
    w = tiny_weights(root / "weights")
    data = prepare_textures(write_assets(root / "assets"), root / "prepared", w["vae_dir"],
                            TexturePrepareOptions(resolution=RESOLUTION), log=lambda _l: None).out
    cfg = load_texture_config(None, base=str(w["adapter_file"].parent), sdxl_dir=str(w["sdxl_dir"]),
                              vae_dir=str(w["vae_dir"]), data=str(data), out=str(root / "sheet-style"), **RUN)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope runs before conftest's per-test one-thread fixture
    try:
        return train_texture(cfg, stream=io.StringIO()), data
    finally:
        torch.set_num_threads(previous)


def test_sheet_at_each_checkpoint_shows_the_held_out_asset_with_and_without_the_lora(run) -> None:
    from PIL import Image

    from inference_server.finetune.lorafile import read_metadata
    from inference_server.finetune.texture.validation import COLUMNS, HEADER, LABEL, TILE

    result, _data = run
    out = result.lora.parent
    sheets = sorted((out / "validation").glob("step-*.png"))
    assert [p.name for p in sheets] == ["step-00000002.png", "step-00000004.png"]
    split = read_metadata(result.lora)["step1x3d"]["data"]["split"]
    assert len(split["heldout"]) == 1 and split["heldout"][0] not in split["training"]
    for path in sheets:
        sheet = np.asarray(Image.open(path).convert("RGB")).astype(np.int16)
        # One held-out asset: two rows (base model, LoRA) of reference + six views + baked texture.
        assert sheet.shape == (HEADER + 2 * (TILE + LABEL), COLUMNS * TILE, 3)
        rows = [sheet[HEADER + r * (TILE + LABEL) + LABEL : HEADER + (r + 1) * (TILE + LABEL)] for r in range(2)]
        tiles = [[row[:, c * TILE : (c + 1) * TILE] for c in range(COLUMNS)] for row in rows]
        for row in tiles:
            for tile in row:
                assert tile.std() > 1.0 and (tile != 255).any()  # every panel holds an image, not the background
        np.testing.assert_array_equal(tiles[0][0], tiles[1][0])  # the same reference on both rows
        # The LoRA (non-zero after the first steps) changes the views and the texture baked from them.
        for c in range(1, COLUMNS):
            assert np.abs(tiles[0][c] - tiles[1][c]).mean() > 0.5, c


def test_held_out_asset_is_kept_out_and_its_loss_is_logged(run) -> None:
    from inference_server.finetune.lorafile import read_metadata
    from inference_server.finetune.texture.data import TextureSet

    result, data = run
    split = read_metadata(result.lora)["step1x3d"]["data"]["split"]
    names = sorted(o["source"] for o in TextureSet(data).objects)
    assert sorted(split["training"] + split["heldout"]) == names and len(split["training"]) == 3
    with open(result.lora.parent / "loss.csv", newline="") as fh:
        logged = {int(r["step"]): r["val_loss"] for r in csv.DictReader(fh)}
    assert [s for s, v in logged.items() if v] == [2, 4]  # at each checkpoint only
    assert all(math.isfinite(float(logged[s])) for s in (2, 4))
    assert read_metadata(result.lora)["step1x3d"]["validation_loss"] == pytest.approx(float(logged[4]), rel=1e-4)  # the CSV keeps 6 digits

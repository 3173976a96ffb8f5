"""The held-out validation split: objects kept out of training by the seed, their loss logged per checkpoint."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

RUN = dict(rank=4, lr=3e-3, seed=0, sample_posterior=False)


def test_split_is_seeded_disjoint_and_keyed_by_name() -> None:
    from inference_server.finetune.config import ConfigError
    from inference_server.finetune.split import holdout_count, split_objects

    names = [f"prop-{i:02d}.glb" for i in range(10)]
    split = split_objects(names, 3, seed=4)
    assert len(split.heldout) == 3 and len(split.train) == 7
    assert sorted(split.train + split.heldout) == list(range(10))
    assert split == split_objects(names, 3, seed=4)  # deterministic
    # keyed by the names, not their order: a folder listed backwards holds out the same objects
    backwards = split_objects(names[::-1], 3, seed=4)
    assert {names[::-1][i] for i in backwards.heldout} == {names[i] for i in split.heldout}
    # a count of 3 extends a count of 2 (the same ranking), and other seeds pick other objects
    assert set(split_objects(names, 2, seed=4).heldout) < set(split.heldout)
    assert len({split_objects(names, 3, seed=s).heldout for s in range(8)}) > 1
    assert split.describe() == {"holdout": 3.0, "seed": 4, "training": [names[i] for i in split.train],
                                "heldout": [names[i] for i in split.heldout]}
    # fractions round but keep at least one; 0 keeps none
    assert holdout_count(0.3, 10) == 3 and holdout_count(0.01, 10) == 1 and holdout_count(0, 10) == 0
    assert split_objects(names, 0, seed=4).heldout == ()
    for bad, words in ((10, "at least one object must train"), (2.5, "whole number"), (-1, "whole number")):
        with pytest.raises(ConfigError, match=words):
            split_objects(names, bad, seed=4)


def test_config_file_and_cli_spell_the_holdout(tmp_path: Path) -> None:
    import argparse

    from inference_server.cli import finetune as finetune_cli
    from inference_server.finetune.config import ConfigError
    from inference_server.finetune.geometry.trainer import load_geometry_config

    path = tmp_path / "props.yaml"
    path.write_text("validation:\n  holdout: 0.25\n  objects: 1\n", encoding="utf-8")
    cfg = load_geometry_config(path)
    assert cfg.validation_holdout == 0.25 and cfg.validation_objects == 1
    assert load_geometry_config(path, validation_holdout=2).validation_holdout == 2  # the command line wins
    with pytest.raises(ConfigError, match="validation_holdout"):
        load_geometry_config(None, validation_holdout=1.5)
    parser = argparse.ArgumentParser()
    finetune_cli.register(parser.add_subparsers())  # the subcommand's own parser, as the CLI registers it
    args = parser.parse_args(["finetune", "geometry", "--holdout", "3"])
    assert args.holdout == 3.0


def _recording_schedule(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Instrument the data sampler: every object index a training batch is built from."""
    from inference_server.finetune.geometry.trainer import Schedule

    seen: list[int] = []
    real = Schedule.indices

    def indices(self: Schedule, step: int) -> list[int]:
        out = real(self, step)
        seen.extend(out)
        return out

    monkeypatch.setattr(Schedule, "indices", indices)
    return seen


def test_held_out_objects_never_train_and_their_loss_is_logged(tiny_model: Path, prepared: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from inference_server.finetune.geometry import trainer as T
    from inference_server.finetune.geometry.data import PreparedSet
    from inference_server.finetune.geometry.objective import FlowTable
    from inference_server.finetune.losslog import VAL_COLOUR, read_val_losses
    from inference_server.finetune.lorafile import read_metadata
    from inference_server.finetune.split import split_objects
    from inference_server.neural.geometry.lora import merge_lora

    data = PreparedSet(prepared)
    names = [o["source"] for o in data.objects]
    expected = split_objects(names, 1, seed=0)
    seen = _recording_schedule(monkeypatch)
    out = tmp_path / "props"
    cfg = T.load_geometry_config(None, base=str(tiny_model), data=str(prepared), out=str(out), steps=6, batch=3,
                                 checkpoint_every=3, validation_holdout=1, validation_objects=1, validation_steps=4,
                                 validation_octree=32, **RUN)
    result = T.train_geometry(cfg, stream=io.StringIO())

    # the sampler drew every training object and never the held-out one (6 steps x 3 objects)
    assert len(seen) == 18 and set(seen) == set(expected.train) and not set(seen) & set(expected.heldout)

    # the validation loss: at each checkpoint, on the held-out object only (recomputed here from the LoRA)
    logged = read_val_losses(out / "loss.csv")
    assert [s for s, _ in logged] == [3, 6]
    transformer, scheduler, label = T.load_base(tiny_model, torch.float32)
    merge_lora(transformer, result.lora, 1.0)
    table, z_scale = FlowTable.from_scheduler(scheduler), T.vae_scale(tiny_model)

    def loss_on(indices: tuple[int, ...]) -> float:
        return T.evaluate_loss(transformer, data, cfg, table, z_scale, label, torch.device("cpu"),
                               cfg.validation_draws, indices=indices)

    held = loss_on(expected.heldout)
    assert logged[-1][1] == pytest.approx(held, rel=1e-4)
    assert abs(loss_on(expected.train) - held) > 1e-3 * held  # a different number on the training objects

    info = read_metadata(result.lora)["step1x3d"]
    assert info["data"]["split"] == {"holdout": 1.0, "seed": 0, "training": [names[i] for i in expected.train],
                                     "heldout": [names[i] for i in expected.heldout]}
    assert info["validation_loss"] == pytest.approx(logged[-1][1], rel=1e-5)
    with Image.open(out / "validation" / "step-00000006.png") as img:
        assert img.size == (3 * 160, 22 + 1 * (160 + 14))  # one row: the held-out object
    with Image.open(out / "loss.png") as img:
        arr = np.asarray(img.convert("RGB")).astype(int)
    assert (np.abs(arr - np.array(VAL_COLOUR)).sum(axis=2) < 30).sum() > 20  # the held-out series is drawn


def test_resume_with_a_split_equals_uninterrupted_and_refuses_another_split(tiny_model: Path, prepared: Path,
                                                                            tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from inference_server.finetune.config import ConfigError
    from inference_server.finetune.geometry.trainer import TrainError, load_geometry_config, train_geometry
    from inference_server.finetune.losslog import read_losses, read_val_losses

    common = dict(base=str(tiny_model), data=str(prepared), steps=6, batch=2, checkpoint_every=3, validation_holdout=1,
                  validation_objects=0, **RUN)
    straight = train_geometry(load_geometry_config(None, out=str(tmp_path / "a"), **common), stream=io.StringIO())

    def crash(step: int, _loss: float) -> None:
        if step == 5:
            raise RuntimeError("simulated power cut")

    with pytest.raises(TrainError, match=r"rank 0 of 1 failed at step 5 .*from step 3"):
        train_geometry(load_geometry_config(None, out=str(tmp_path / "b"), **common), stream=io.StringIO(),
                       on_step=crash)
    other = dict(common, validation_holdout=2)
    with pytest.raises(ConfigError, match="another split"):
        train_geometry(load_geometry_config(None, out=str(tmp_path / "b"), resume=True, **other), stream=io.StringIO())
    resumed = train_geometry(load_geometry_config(None, out=str(tmp_path / "b"), resume=True, **common),
                             stream=io.StringIO())
    a, b = load_file(str(straight.lora)), load_file(str(resumed.lora))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_losses(tmp_path / "b" / "loss.csv") == read_losses(tmp_path / "a" / "loss.csv")
    assert read_val_losses(tmp_path / "b" / "loss.csv") == read_val_losses(tmp_path / "a" / "loss.csv")
    assert json.loads((tmp_path / "b" / "config.json").read_text())["validation_holdout"] == 1


def test_loss_log_reads_files_without_the_validation_column(tmp_path: Path) -> None:
    from inference_server.finetune.losslog import LossLog, read_val_losses

    path = tmp_path / "loss.csv"
    path.write_text("step,loss,lr,samples_per_s,elapsed_s\n1,0.5,0.001,2,1\n2,0.4,0.001,2,2\n3,0.3,0.001,2,3\n")
    log = LossLog(path, resume_step=2)  # a run from before the column existed, resumed at step 2
    log.append(3, 0.25, 1e-3, 2.0, 3.0, val_loss=0.75)
    assert path.read_text().splitlines() == ["step,loss,lr,samples_per_s,elapsed_s,val_loss", "1,0.5,0.001,2,1,",
                                             "2,0.4,0.001,2,2,", "3,0.25,0.001,2,3,0.75"]
    assert read_val_losses(path) == [(3, 0.75)] and log.val_points() == [(3, 0.75)]

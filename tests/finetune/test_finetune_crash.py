"""A rank that dies mid-run under torchrun: the run fails at once with one sentence, the checkpoint
on disk is whole, and ``--resume`` finishes it with the uninterrupted run's weights.

Two gloo processes on the CPU. ``dying_rank.py`` (test-only) is the CLI with rank 1 failing when it
draws its samples of step 7: by an exception (as an unreadable sample file would), or killed
outright (``os._exit``, as the kernel's OOM killer would). Checkpoints every 3 steps: 3 and 6 exist.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch

from .torchrun import CLI, torchrun, our_lines

DYING = Path(__file__).with_name("dying_rank.py")


def _args(model: Path, data: Path, out: Path) -> list[str]:
    return ["finetune", "geometry", "--base", str(model), "--data", str(data), "--out", str(out), "--rank", "4",
            "--steps", "8", "--batch", "2", "--lr", "3e-3", "--seed", "5", "--device", "cpu",
            "--validation-objects", "0", "--checkpoint-every", "3"]


def _assert_checkpoints_intact(out: Path) -> None:
    from inference_server.finetune.checkpoint import load_latest

    # exactly the two atomic files of rank 0: no temporary leftovers, nothing from rank 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000003.pt", "step-00000006.pt"]
    step, state = load_latest(out)  # type: ignore[misc]
    assert step == 6 and state["step"] == 6
    assert any(k.endswith("lora_B.weight") and bool(v.abs().max() > 0) for k, v in state["lora"].items())


def _assert_equals_uninterrupted(lora: Path, model: Path, data: Path, tmp: Path) -> None:
    from safetensors.torch import load_file

    from inference_server.finetune.geometry.trainer import load_geometry_config, train_geometry

    straight = train_geometry(load_geometry_config(None, base=str(model), data=str(data), out=str(tmp / "straight"),
                                                   rank=4, steps=8, batch=2, lr=3e-3, seed=5, device="cpu",
                                                   validation_objects=0, checkpoint_every=3), stream=io.StringIO())
    a, b = load_file(str(straight.lora)), load_file(str(lora))
    assert a.keys() == b.keys()
    for key in a:  # two ranks vs one process: equal up to the summation order of the gradient average
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)
    assert any(k.endswith("lora_B.weight") and bool(a[k].abs().max() > 0) for k in a)  # trained, not initial


@pytest.mark.slow  # two torchrun launches of two processes each (~60-90 s on 2 cores)
def test_a_failing_rank_stops_the_run_with_one_sentence_and_resume_finishes_it(
        tiny_model: Path, prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "props"
    proc = torchrun([str(DYING), "1", "7", "raise"], _args(tiny_model, prepared, out))
    assert proc.returncode != 0
    lines = our_lines(proc)
    # one sentence for the whole run (the survivor, stopped by the broken collective or torchrun's
    # SIGTERM, stays silent), naming the failed rank, its step and cause, and the resume point
    assert lines == [f"error: rank 1 of 2 failed at step 7 (OSError: simulated unreadable sample on rank 1); "
                     f"resume with --resume (from step 6, {out / 'checkpoints'})"], proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout
    _assert_checkpoints_intact(out)
    assert not (out / "props.safetensors").exists()  # no LoRA file from a run that did not finish

    resumed = torchrun(CLI, [*_args(tiny_model, prepared, out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step 6" in resumed.stderr
    _assert_equals_uninterrupted(out / "props.safetensors", tiny_model, prepared, tmp_path)
    from inference_server.finetune.losslog import read_losses

    assert [s for s, _ in read_losses(out / "loss.csv")] == list(range(1, 9))  # steps 7.. of the crash replaced


@pytest.mark.slow  # one torchrun launch of two processes plus the survivor's 5 s wait for a word (~20-30 s)
def test_a_rank_killed_outright_is_named_by_the_survivor(tiny_model: Path, prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "props"
    proc = torchrun([str(DYING), "1", "7", "exit"], _args(tiny_model, prepared, out))
    assert proc.returncode != 0
    lines = our_lines(proc)
    assert len(lines) == 1, proc.stderr[-3000:]
    # rank 1 printed nothing (os._exit); rank 0 found it missing from the roll call in torchrun's store
    assert re.fullmatch(r"error: rank 1 of 2 died during step 7 without a message \(.*\); resume with --resume "
                        rf"\(from step 6, {re.escape(str(out / 'checkpoints'))}\)", lines[0]), lines[0]
    assert "exitcode  : 3" in proc.stderr  # torchrun's own report agrees on the cause
    _assert_checkpoints_intact(out)


@pytest.mark.slow  # one torchrun launch that runs two attempts of two processes (~40-60 s on 2 cores)
def test_torchrun_restarts_with_resume_recover_by_themselves(tiny_model: Path, prepared: Path, tmp_path: Path) -> None:
    """``torchrun --max-restarts 1 ... --resume``: the failed attempt says its sentence, torchrun starts the
    workers again, they continue from the newest checkpoint and the run ends as if nothing had happened."""
    out = tmp_path / "props"
    proc = torchrun([str(DYING), "1", "7", "raise"], [*_args(tiny_model, prepared, out), "--resume"],
                     "--max-restarts", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(our_lines(proc)) == 1 and "rank 1 of 2 failed at step 7" in our_lines(proc)[0]
    assert "no checkpoint in" in proc.stderr and "resumed from step 6" in proc.stderr  # attempt 1, attempt 2
    assert proc.stdout.count("LoRA written to") == 1
    _assert_equals_uninterrupted(out / "props.safetensors", tiny_model, prepared, tmp_path)


@pytest.mark.slow  # one torchrun launch of two processes (~20-40 s on 2 cores)
def test_ranks_that_see_different_checkpoints_are_refused(tiny_model: Path, prepared: Path, tmp_path: Path) -> None:
    """--out not shared between nodes: rank 1 sees no checkpoint where rank 0 sees step 3. Resuming would
    run different steps on the two ranks (and hang); the run is refused before its first step."""
    from inference_server.finetune.geometry.trainer import load_geometry_config, train_geometry

    out = tmp_path / "props"
    train_geometry(load_geometry_config(None, base=str(tiny_model), data=str(prepared), out=str(out), rank=4, steps=3,
                                        batch=2, lr=3e-3, seed=5, device="cpu", validation_objects=0,
                                        checkpoint_every=3), stream=io.StringIO())
    proc = torchrun([str(DYING), "1", "0", "blind"], [*_args(tiny_model, prepared, out), "--resume"])
    assert proc.returncode != 0
    # both ranks refuse; the first to note it in torchrun's store says it, the other fails silently
    assert our_lines(proc) == [f"error: the ranks of this run see different checkpoints in {out / 'checkpoints'}; --out "
                               "must be on storage every node shares (rank 0 writes it, every rank resumes from it)"], \
        proc.stderr[-3000:]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000003.pt"]  # nothing was trained


@pytest.mark.slow  # two torchrun launches of two processes that stop before loading any model (~20-40 s)
def test_a_config_error_is_said_once_for_the_run(tiny_model: Path, prepared: Path, tmp_path: Path) -> None:
    """Every rank refuses the same settings: once the process group exists the first rank to note it in
    torchrun's store says it (here batch 2 over 2 ranks x 2 accumulation steps); before it exists (no
    --base) rank 0 does. The other rank fails with the same exit status and prints nothing."""
    common = ["--data", str(prepared), "--out", str(tmp_path / "props"), "--steps", "2", "--device", "cpu"]
    uneven = torchrun(CLI, ["finetune", "geometry", "--base", str(tiny_model), *common, "--batch", "2",
                            "--grad-accum", "2"])
    assert uneven.returncode != 0
    assert our_lines(uneven) == ["error: the batch of 2 does not split evenly over 2 process(es) x 2 accumulation "
                                 "step(s); use a multiple of 4"], uneven.stderr[-3000:]
    no_base = torchrun(CLI, ["finetune", "geometry", *common])
    assert no_base.returncode != 0
    assert our_lines(no_base) == ["error: --base is required (or 'base:' in the config file)"], no_base.stderr[-3000:]
    # no worker's traceback (torchrun's agent prints its own, which names no file of ours)
    assert "/inference_server/" not in uneven.stdout + uneven.stderr + no_base.stdout + no_base.stderr

"""How a failed run reports itself, without torchrun: the store protocol on a real loopback TCPStore,
SIGTERM on one process, and checkpoints left by a save that was cut short. (The same under a real
torchrun with a dying rank: test_finetune_crash.py, slow.)"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import pytest
import torch


def _store() -> object:
    import torch.distributed as dist

    return dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)


def _ctx(rank: int, store: object) -> object:
    from inference_server.finetune.distributed import DistContext

    return DistContext(rank, 2, rank, torch.device("cpu"), "gloo", store)


def _checkpoint(out: Path, step: int) -> None:
    from inference_server.finetune.checkpoint import save_checkpoint

    save_checkpoint(out, step, {"step": step}, keep=2)


def test_the_rank_that_failed_speaks_and_the_survivor_stays_silent(tmp_path: Path) -> None:
    from inference_server.finetune.failure import run_failed

    _checkpoint(tmp_path, 6)
    store = _store()
    own = run_failed(OSError("unreadable sample"), _ctx(1, store), 7, tmp_path)  # type: ignore[arg-type]
    assert not own.reported_elsewhere and own.code == "training_failed"
    assert str(own) == (f"rank 1 of 2 failed at step 7 (OSError: unreadable sample); resume with --resume "
                        f"(from step 6, {tmp_path / 'checkpoints'})")
    # rank 0's collective then broke (gloo's words, as DDP raises them): it finds rank 1's word at once
    peer = RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:21899")
    survivor = run_failed(peer, _ctx(0, store), 7, tmp_path)  # type: ignore[arg-type]
    assert survivor.reported_elsewhere


def test_a_rank_that_died_silently_is_named_by_the_first_survivor(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from inference_server.finetune import failure
    from inference_server.finetune.failure import Terminated, run_failed

    monkeypatch.setattr(failure, "GRACE_S", 0.3)  # the wait for a word that never comes
    _checkpoint(tmp_path, 6)
    store = _store()
    first = run_failed(Terminated("stopped by SIGTERM"), _ctx(0, store), 7, tmp_path)  # type: ignore[arg-type]
    assert not first.reported_elsewhere
    assert str(first).startswith("rank 1 of 2 died during step 7 without a message (")
    assert str(first).endswith(f"resume with --resume (from step 6, {tmp_path / 'checkpoints'})")
    # of four ranks, 1 and 2 died silently; 3 answers the roll call while 0 (the first to notice) waits
    from inference_server.finetune.distributed import DistContext

    four = _store()
    failure._Board(DistContext(3, 4, 3, torch.device("cpu"), "gloo", four))  # rank 3 checks in
    named = run_failed(RuntimeError("Connection reset by peer"), DistContext(0, 4, 0, torch.device("cpu"), "gloo", four),
                       7, tmp_path)
    assert not named.reported_elsewhere and str(named).startswith("ranks 1, 2 of 4 died during step 7")
    later = run_failed(Terminated("stopped by SIGTERM"), DistContext(3, 4, 3, torch.device("cpu"), "gloo", four), 7,
                       tmp_path)
    assert later.reported_elsewhere  # the run has spoken once already


def test_peer_failures_are_told_from_a_ranks_own() -> None:
    import torch.distributed as dist

    from inference_server.finetune.failure import Terminated, is_peer_failure

    assert is_peer_failure(Terminated("x")) and is_peer_failure(dist.DistBackendError("NCCL timeout"))
    assert is_peer_failure(RuntimeError("... This is typically caused by a remote worker crashing."))
    assert not is_peer_failure(OSError("No such file")) and not is_peer_failure(torch.cuda.OutOfMemoryError("OOM"))
    assert not is_peer_failure(KeyboardInterrupt())


def test_sigterm_stops_a_run_with_its_resume_point(tiny_model: Path, prepared: Path, tmp_path: Path) -> None:
    """A scheduler pre-empting the job (or torchrun stopping a survivor) sends SIGTERM: one sentence
    with the resume step instead of a silent death; the previous handler is back afterwards."""
    from inference_server.finetune.geometry.trainer import TrainError, load_geometry_config, train_geometry

    before = signal.getsignal(signal.SIGTERM)

    def term(step: int, _loss: float) -> None:
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    cfg = load_geometry_config(None, base=str(tiny_model), data=str(prepared), out=str(tmp_path / "run"), rank=4,
                               steps=8, batch=2, lr=3e-3, checkpoint_every=3, validation_objects=0)
    with pytest.raises(TrainError) as info:
        train_geometry(cfg, stream=io.StringIO(), on_step=term)
    assert str(info.value).startswith("rank 0 of 1 failed at step 4 (stopped by SIGTERM); resume with --resume "
                                      "(from step 3,")
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_save_cut_short_is_never_loaded_and_is_cleared(tmp_path: Path) -> None:
    from inference_server.finetune.checkpoint import checkpoint_dir, load_latest

    _checkpoint(tmp_path, 3)
    partial = checkpoint_dir(tmp_path) / ".step-00000006.pt.tmp-4242"  # killed mid-write at step 6
    partial.write_bytes(b"PK\x03\x04 half a zip")
    found = load_latest(tmp_path)
    assert found is not None and found[0] == 3  # the partial file is not a checkpoint
    _checkpoint(tmp_path, 6)
    assert sorted(p.name for p in checkpoint_dir(tmp_path).iterdir()) == ["step-00000003.pt", "step-00000006.pt"]


def test_a_failure_outside_the_steps_is_said_by_the_first_rank_only(tmp_path: Path) -> None:
    """Both ranks refuse the same config once the process group exists: the first to note it in the store
    says the failure's own sentence with its own code, the other is silent; a rank whose collective broke
    because of it stays silent too. On one process the error passes unchanged."""
    from inference_server.finetune.config import ConfigError
    from inference_server.finetune.distributed import DistContext
    from inference_server.finetune.failure import setup_failed

    refused = ConfigError("the batch of 2 does not split evenly over 2 process(es)")
    store = _store()
    first = setup_failed(refused, _ctx(1, store))  # type: ignore[arg-type]
    second = setup_failed(ConfigError(str(refused)), _ctx(0, store))  # type: ignore[arg-type]
    assert str(first) == str(refused) and first.code == refused.code == "bad_config"  # type: ignore[attr-defined]
    assert not first.reported_elsewhere and second.reported_elsewhere  # type: ignore[attr-defined]
    peer = setup_failed(RuntimeError("Connection closed by peer"), _ctx(0, store))  # type: ignore[arg-type]
    assert peer.reported_elsewhere  # type: ignore[attr-defined]
    one = DistContext(0, 1, 0, torch.device("cpu"), None)
    assert setup_failed(refused, one) is refused


def test_before_the_process_group_only_rank_0_speaks(monkeypatch: pytest.MonkeyPatch) -> None:
    from inference_server.finetune import failure
    from inference_server.finetune.config import ConfigError
    from inference_server.finetune.failure import TrainError, said_by_another_rank

    monkeypatch.setattr(failure, "LINGER_S", 0.0)
    refused = ConfigError("--base is required")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert not said_by_another_rank(refused)  # one process: it speaks
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert not said_by_another_rank(refused)
    monkeypatch.setenv("RANK", "1")
    assert said_by_another_rank(refused)
    # a TrainError was agreed through the store: its flag decides, whatever the rank
    assert not said_by_another_rank(TrainError("rank 1 of 2 failed at step 7 (OSError: x); ..."))
    monkeypatch.setenv("RANK", "0")
    assert said_by_another_rank(TrainError("rank 0 of 2 failed", reported_elsewhere=True))

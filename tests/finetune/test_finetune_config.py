"""Training configs: our keys, upstream's keys, the distributed block, and one-sentence refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference_server.finetune.config import ConfigError
from inference_server.finetune.distributed import check_world, split_batch
from inference_server.finetune.geometry.trainer import load_geometry_config

UPSTREAM_YAML = """
exp_root_dir: outputs
seed: 7
data:
  n_samples: 32768
  batch_size: 2            # upstream: per GPU
system:
  use_lora: true
  rank: 128
  alpha: 128
  optimizer:
    name: AdamW
    args: {lr: 2.e-4, betas: [0.9, 0.99], eps: 1.e-6}
  visual_condition:
    empty_embeds_ratio: ${system.dropout_ref}
    image_size: 518
  dropout_ref: 0.1
  shape_model: {num_latents: 2048, embed_dim: 64}
training:
  lora_rank: 64
trainer:
  max_steps: 3000
  precision: bf16-mixed
checkpoint:
  every_n_train_steps: 250
distributed:
  num_nodes: 2
  gpus_per_node: 4
  strategy: ddp
"""


def test_upstream_keys_and_the_distributed_block(tmp_path: Path) -> None:
    path = tmp_path / "lora.yaml"
    path.write_text(UPSTREAM_YAML)
    cfg = load_geometry_config(path)
    assert cfg.rank == 64  # training.lora_rank comes after system.rank in the file and wins
    assert cfg.lora_alpha == 128.0 and cfg.lr == 2e-4 and cfg.betas == (0.9, 0.99) and cfg.seed == 7
    assert cfg.steps == 3000 and cfg.mixed_precision == "bf16" and cfg.checkpoint_every == 250
    assert (cfg.num_nodes, cfg.gpus_per_node, cfg.strategy) == (2, 4, "ddp") and cfg.expected_world_size == 8
    assert cfg.batch == 16  # data.batch_size 2 per GPU x 8 GPUs: our batch is global
    assert cfg.condition_dropout == pytest.approx(0.1)  # resolved through ${...}
    assert "system.shape_model.num_latents" in cfg.ignored and "data.n_samples" in cfg.ignored
    # the command line wins over the file
    assert load_geometry_config(path, rank=8, steps=10).rank == 8


def test_json_with_our_flat_keys(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"base": "/m", "data": "/d", "out": "/o", "rank": 16, "batch": 4, "grad_accum": 2,
                                "lora_layers": "attn.to_q, attn.to_v", "gradient_checkpointing": True}))
    cfg = load_geometry_config(path)
    assert (cfg.rank, cfg.batch, cfg.grad_accum, cfg.gradient_checkpointing) == (16, 4, 2, True)
    assert cfg.lora_layers == ("attn.to_q", "attn.to_v")


@pytest.mark.parametrize("text, message", [
    ("system: {use_lora: false}", "only LoRA fine-tuning is supported"),
    ("rnak: 4", "unknown config key 'rnak'"),
    ("distributed: {strategy: fsdp}", "strategy 'fsdp' is not supported"),
    ("trainer: {precision: 16-mixed}", "precision '16-mixed' is not supported"),
    ("training: {lora_rank: 0}", "rank must be a whole number of at least 1"),
    ("[1, 2]", "must hold a mapping"),
    ("rank: [", "cannot parse"),
])
def test_bad_configs_are_refused_in_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_geometry_config(path)
    assert "\n" not in str(info.value)


def test_launch_must_match_the_config_and_batches_must_split() -> None:
    check_world(8, 8, 2, 4)
    check_world(1, 2, 1, 1)  # no distributed block: any launch
    with pytest.raises(ConfigError, match="torchrun --nnodes 2 --nproc-per-node 4"):
        check_world(8, 1, 2, 4)
    assert split_batch(8, 2, 2) == 2
    with pytest.raises(ConfigError, match="use a multiple of 4"):
        split_batch(6, 2, 2)

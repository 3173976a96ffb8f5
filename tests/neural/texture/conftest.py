"""Shared fixtures of the texture-stage tests: one set of tiny SDXL-shaped weights per session."""

from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # everything is loaded from local folders; the hub must never be asked

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from texture_tiny_models import build_tiny_weights

    return build_tiny_weights(tmp_path_factory.mktemp("texture_weights"))


@pytest.fixture(scope="session")
def tiny_stage(tiny_weights: dict):
    """A loaded TextureStage on the tiny weights (64x64 views, float32 on the CPU)."""
    from inference_server.neural.texture import TextureStage

    stage = TextureStage.from_paths(
        tiny_weights["adapter_file"], tiny_weights["sdxl_dir"], tiny_weights["vae_dir"],
        dtype="float32", device="cpu", resolution=64, bake_resolution=128, lora_dir=tiny_weights["root"] / "loras",
    )
    stage.load()
    return stage

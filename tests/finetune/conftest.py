"""Fixtures of the fine-tuning tests: a tiny official-layout geometry model, meshes, a prepared set.

Sizes are tiny on purpose (64 surface points, 2 views of 48 px, a 24^3 shell grid) so each
preparation takes well under a second; the code paths are those of a full-size run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # everything loads from local folders

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pytest.importorskip("peft")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "neural" / "geometry"))  # the tiny-model builder

TINY_PREP: dict[str, Any] = dict(points=64, views=2, render_size=48, watertight_resolution=24, watertight_samples=4000)


def write_meshes(folder: Path) -> Path:
    """Four distinct closed shapes in four of the formats we read."""
    import trimesh

    folder.mkdir(parents=True, exist_ok=True)
    trimesh.creation.box(extents=(1.0, 0.5, 0.3)).export(folder / "crate.glb")
    trimesh.creation.icosphere(subdivisions=2, radius=0.6).export(folder / "ball.obj")
    trimesh.creation.cylinder(radius=0.2, height=1.5, sections=16).export(folder / "pole.stl")
    trimesh.creation.cone(radius=0.5, height=1.0, sections=16).export(folder / "cone.ply")
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from geometry_tiny_models import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("weights") / "Step1X-3D-Geometry-1300m", label=False, seed=0)


@pytest.fixture(scope="session")
def four_meshes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_meshes(tmp_path_factory.mktemp("meshes"))


@pytest.fixture(scope="session")
def prepared(tiny_model: Path, four_meshes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from inference_server.finetune.geometry.prepare import PrepareOptions, prepare

    out = tmp_path_factory.mktemp("prepared")
    prepare(four_meshes, out, tiny_model, PrepareOptions(**TINY_PREP), log=lambda _line: None)
    return out


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny models' kernels are microseconds long: extra intra-op threads only contend for the
    shared cores. Restored afterwards, so other tests keep their setting."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# One short run on the four objects, shared by the tests that need a trained LoRA. lr 3e-3 and
# rank 4 suit the 32-wide tiny transformer; sample_posterior=False because the tiny random VAE's
# posterior std (about 1) is as large as its latents' own spread, which would drown the signal
# (the released VAE's posterior is narrow; upstream's default, True, stays the default).
TINY_TRAIN: dict[str, Any] = dict(rank=4, steps=40, batch=4, lr=3e-3, checkpoint_every=20, sample_posterior=False, seed=0,
                                  validation_objects=2, validation_steps=8, validation_octree=32)


@pytest.fixture(scope="session")
def trained(tiny_model: Path, prepared: Path, tmp_path_factory: pytest.TempPathFactory):
    import io

    from inference_server.finetune.geometry.trainer import load_geometry_config, train_geometry

    out = tmp_path_factory.mktemp("run") / "studio-props"
    cfg = load_geometry_config(None, base=str(tiny_model), data=str(prepared), out=str(out), **TINY_TRAIN)
    return train_geometry(cfg, stream=io.StringIO())

"""Shared fixtures of the geometry-stage tests: tiny official-layout weights, written once per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # everything loads from local folders; the hub must never be asked

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository root holding both tiny models under the official subfolder names."""
    from geometry_tiny_models import write_tiny_repo

    return write_tiny_repo(tmp_path_factory.mktemp("step1x3d_weights"))


@pytest.fixture(scope="session")
def base_pipe(tiny_repo: Path):
    from inference_server.neural.geometry import Step1X3DGeometryPipeline

    return Step1X3DGeometryPipeline.from_pretrained(tiny_repo, subfolder="Step1X-3D-Geometry-1300m")


@pytest.fixture(scope="session")
def label_pipe(tiny_repo: Path):
    from inference_server.neural.geometry import Step1X3DGeometryPipeline

    return Step1X3DGeometryPipeline.from_pretrained(tiny_repo, subfolder="Step1X-3D-Geometry-Label-1300m")


@pytest.fixture()
def reference_rgba() -> np.ndarray:
    """A red ellipse on a transparent background."""
    h, w = 96, 80
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((xx - 40) / 26.0) ** 2 + ((yy - 48) / 38.0) ** 2 <= 1.0
    img = np.zeros((h, w, 4), np.uint8)
    img[inside] = (210, 60, 40, 255)
    return img

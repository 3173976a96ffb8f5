"""``step1x3d weights check`` and the backend's start-up check, on tiny official-layout weights:
a complete folder passes, and each damaged file is one line naming it (exit status 1)."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from safetensors.torch import load_file, save_file  # noqa: E402

from inference_server.cli import main  # noqa: E402
from inference_server.pipeline.base import PipelineError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests/neural/geometry"), str(ROOT / "tests/neural/texture")]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `weights fetch` layout, with the tiny geometry models and tiny SDXL-shaped texture weights."""
    from geometry_tiny_models import write_tiny_repo
    from texture_tiny_models import build_tiny_weights

    tmp = tmp_path_factory.mktemp("weights_layout")
    root = write_tiny_repo(tmp / "w")
    tex = build_tiny_weights(tmp / "tex")
    shutil.copytree(tex["sdxl_dir"], root / "stable-diffusion-xl-base-1.0")
    shutil.copytree(tex["vae_dir"], root / "sdxl-vae-fp16-fix")
    shutil.copytree(tex["adapter_file"].parent, root / "Step1X-3D-Texture")
    return root


@pytest.fixture()
def root_logging():
    """`serve` configures the root logger onto this test's captured stderr: undo that afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture()
def copy(layout: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(layout, tmp_path / "w"))


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(["weights", "check", str(path)])
    return status, capsys.readouterr().err.strip().splitlines()


def test_complete_folder_passes(layout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "check", str(layout)]) == 0
    assert "all weights match the models" in capsys.readouterr().out
    # One geometry model folder on its own is checked too.
    assert main(["weights", "check", str(layout / "Step1X-3D-Geometry-Label-1300m")]) == 0


def _reshape_one(path: Path, key_part: str) -> str:
    state = load_file(str(path))
    key = next(k for k in sorted(state) if key_part in k and state[k].ndim == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    save_file(state, str(path))
    return key


def test_missing_file_and_wrong_shape_one_line_each(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vae = copy / "Step1X-3D-Geometry-1300m/vae/diffusion_pytorch_model.safetensors"
    vae.unlink()
    transformer = copy / "Step1X-3D-Geometry-Label-1300m/transformer/diffusion_pytorch_model.safetensors"
    key = _reshape_one(transformer, "proj_in")
    unet = copy / "stable-diffusion-xl-base-1.0/unet/diffusion_pytorch_model.safetensors"
    unet_key = _reshape_one(unet, "time_embedding")
    (copy / "sdxl-vae-fp16-fix/config.json").unlink()

    status, lines = check(copy, capsys)
    assert status == 1
    assert len(lines) == 4, lines
    assert lines[0] == f"missing weights file: {vae}"
    assert lines[1].startswith(f"{transformer} does not match the model its config.json describes; shape mismatches: {key} (")
    assert lines[2].startswith(f"{unet} does not match the model its config.json describes; shape mismatches: {unet_key} (")
    assert "sdxl-vae-fp16-fix" in lines[3] and "holds no VAE" in lines[3]


def test_adapter_for_another_unet_is_reported(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    adapter = copy / "Step1X-3D-Texture/step1x-3d-ig2v.safetensors"
    state = load_file(str(adapter))
    dropped = sorted(k for k in state if k.startswith("adapter."))[0]
    del state[dropped]
    save_file(state, str(adapter))
    status, lines = check(copy, capsys)
    assert status == 1 and len(lines) == 1
    assert lines[0].startswith(f"{adapter} does not match") and f"missing keys: {dropped}" in lines[0]


def test_empty_folder_and_backend_start(copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        root_logging: None) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    status, lines = check(empty, capsys)
    assert status == 1 and len(lines) == 1 and "no Step1X-3D weights here" in lines[0]

    from inference_server.neural.backend import Step1X3DBackend

    # The fetch layout is complete: no --sdxl-dir / --sdxl-vae-dir needed for the texture stage.
    backend = Step1X3DBackend(copy, device="cpu")
    assert backend.capabilities()["neural_texture"] is True
    assert backend._texture_paths() == (copy / "Step1X-3D-Texture/step1x-3d-ig2v.safetensors",
                                        copy / "stable-diffusion-xl-base-1.0", copy / "sdxl-vae-fp16-fix")
    # serve checks the same at start: a damaged file stops it before it binds, with the checker's line.
    key = _reshape_one(copy / "Step1X-3D-Geometry-1300m/vae/diffusion_pytorch_model.safetensors", "post_kl")
    status = main(["serve", "--weights", str(copy), "--port", "0", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert key in err[0] and err[0].startswith(str(copy / "Step1X-3D-Geometry-1300m/vae"))
    assert err[-1] == (f"error: the weights in {copy} do not match the models (1 problem(s) above); "
                       "fetch them again with `step1x3d weights fetch`")

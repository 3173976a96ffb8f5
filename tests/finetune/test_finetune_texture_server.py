"""A trained texture style LoRA through a real ``step1x3d serve --lora-dir DIR`` process (issue 14).

The weights folder has the ``weights fetch`` layout, all tiny and random: the geometry model
(unused here: the jobs paint the client's mesh) and the texture stage's adapter, SDXL and VAE
folders. The LoRA is trained by ``train_texture`` (the ``finetune texture`` command's code) for a
few steps on two red-tinted assets; what is asserted is that the server loads the file our
trainer writes, offers it in ``welcome`` and applies it to a job, not the style it learnt (that
is tests/finetune/test_finetune_texture_style.py).
"""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from blender_addon.client import ErrorEvent, Rejected, Result, ResultReady, ServerConnection, StateChanged, Welcome
from blender_addon.protocol.options import specs_from_wire
from blender_addon.protocol.settings import JobSettings
from tests.server.harness import ServerProcess, collect, running_server

from .texture_helpers import RESOLUTION, tiny_weights, write_assets

pytest.importorskip("zmq")

LORA = "red-style"
# A few steps at a high rate: enough for non-zero LoRA B matrices (they start at 0) from the real trainer.
TRAIN = dict(rank=4, steps=3, batch=2, lr=1e-2, checkpoint_every=3, seed=0, validation_objects=0)


@pytest.fixture(scope="module")
def weights_root(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``weights fetch`` layout: geometry model, texture adapter, SDXL base and VAE folders."""
    from inference_server.weights.layout import SDXL_FOLDER, SDXL_VAE_FOLDER

    root = tmp_path_factory.mktemp("texture-server-weights")
    paths = tiny_weights(root)
    shutil.copytree(tiny_model, root / tiny_model.name)
    paths["sdxl_dir"].rename(root / SDXL_FOLDER)
    paths["vae_dir"].rename(root / SDXL_VAE_FOLDER)
    return root


@pytest.fixture(scope="module")
def lora_dir(weights_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from inference_server.finetune.texture.prepare import TexturePrepareOptions, prepare_textures
    from inference_server.finetune.texture.trainer import load_texture_config, train_texture
    from inference_server.weights.layout import SDXL_FOLDER, SDXL_VAE_FOLDER, TEXTURE_FOLDER

    assets = write_assets(tmp_path_factory.mktemp("red-assets"), count=2, tint=(1.0, 0.1, 0.1), strength=0.6)
    data = tmp_path_factory.mktemp("red-prepared")
    prepare_textures(assets, data, weights_root / SDXL_VAE_FOLDER, TexturePrepareOptions(resolution=RESOLUTION),
                     log=lambda _l: None)
    out = tmp_path_factory.mktemp("loras") / LORA
    cfg = load_texture_config(None, base=str(weights_root / TEXTURE_FOLDER), sdxl_dir=str(weights_root / SDXL_FOLDER),
                              vae_dir=str(weights_root / SDXL_VAE_FOLDER), data=str(data), out=str(out), **TRAIN)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope runs before conftest's per-test one-thread fixture
    try:
        run = train_texture(cfg, stream=io.StringIO())
    finally:
        torch.set_num_threads(previous)
    # The server's folder holds only the file, as an artist would copy it there.
    served = tmp_path_factory.mktemp("style-loras")
    shutil.copy(run.lora, served / f"{LORA}.safetensors")
    return served


@pytest.fixture(scope="module")
def texture_server(weights_root: Path, lora_dir: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("texture-lora-results"), "--weights", str(weights_root),
                              "--device", "cpu", "--lora-dir", str(lora_dir), backend="step1x3d")


def _image() -> bytes:
    img = np.zeros((64, 64, 4), np.uint8)
    img[12:52, 12:52] = (180, 90, 60, 255)
    buf = io.BytesIO()
    Image.fromarray(img, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _mesh() -> dict[str, Any]:
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    return {"positions": sphere.vertices.astype(np.float32), "faces": sphere.faces.astype(np.uint32)}


def _failed(e: Any) -> bool:
    return isinstance(e, (ErrorEvent, Rejected)) or (isinstance(e, StateChanged) and e.state == "failed")


def _job(conn: ServerConnection, **options: Any) -> Any:
    jid = f"t-{uuid.uuid4().hex[:12]}"
    settings = JobSettings(mode="texture", texture_steps=2, texture_size=512, seed=7, pbr=False, options=options)
    conn.submit(jid, [_image()], settings, mesh=_mesh())
    events: list[Any] = collect(conn, lambda e: (isinstance(e, ResultReady) or _failed(e))
                                and getattr(e, "job_id", None) == jid, timeout_s=240.0)
    if _failed(events[-1]):
        return events[-1]
    conn.fetch(jid)
    return collect(conn, lambda e: isinstance(e, Result) and e.job_id == jid, timeout_s=60.0)[-1]


def _base_colour(result: Result) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(result.textures["base_color"])).convert("RGB")).astype(np.int16)


@pytest.mark.slow  # a real server process, a short training run and three tiny texture jobs at the stage's 768^2: ~100 s on 2 cores
def test_the_trained_texture_lora_changes_a_job_and_scale_zero_does_not(texture_server: ServerProcess) -> None:
    with ServerConnection(texture_server.address) as conn:
        conn.hello()
        welcome: Any = collect(conn, lambda e: isinstance(e, Welcome))[-1]
        plain = _job(conn)
        styled = _job(conn, lora=LORA, lora_scale=1.0)
        zero = _job(conn, lora=LORA, lora_scale=0.0)
    # welcome lists the trained file as a choice of the style option (the panel's Style drop-down).
    caps = welcome.backends["step1x3d"]
    assert caps["texture_loras"] == [LORA] and caps["neural_texture"] is True
    declared = {s.name: s for s in specs_from_wire(caps["options"])}
    assert declared["lora"].choices == ("", LORA) and declared["lora"].default == ""
    assert isinstance(plain, Result) and isinstance(styled, Result) and isinstance(zero, Result), (plain, styled, zero)
    assert any(f"style LoRA '{LORA}' at scale 1 (88 layers)" in n for n in styled.notes), styled.notes
    assert not any("style LoRA" in n for n in plain.notes)
    assert styled.provenance["settings"]["options"]["lora"] == LORA
    a, b, c = (_base_colour(r) for r in (plain, styled, zero))
    # Scale 0 is the base model bit for bit; scale 1 moves the base colour map by more than one
    # level of 255 on average over all its texels (measured: 1.7; the tiny LoRA trained 3 steps).
    np.testing.assert_array_equal(c, a)
    assert np.abs(b - a).mean() > 1.0

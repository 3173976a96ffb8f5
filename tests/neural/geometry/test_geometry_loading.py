"""Loading through the real loader: official layout, strict keys, clear errors, dtypes, no hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from inference_server.neural.geometry import Step1X3DGeometryPipeline
from inference_server.neural.geometry.loader import (
    WEIGHTS_NAME,
    load_components,
    resolve_model_dir,
)
from inference_server.pipeline.base import PipelineError

BASE = "Step1X-3D-Geometry-1300m"
LABEL = "Step1X-3D-Geometry-Label-1300m"


@pytest.fixture()
def base_copy(tiny_repo: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_repo / BASE, tmp_path / BASE))


def test_files_use_the_official_key_names(tiny_repo: Path) -> None:
    dino = load_file(str(tiny_repo / BASE / "visual_encoder" / WEIGHTS_NAME))
    assert "dino_model.encoder.layer.0.attention.attention.query.weight" in dino
    assert "dino_model.encoder.layer.0.attention.output.dense.weight" in dino
    clip = load_file(str(tiny_repo / LABEL / "visual_encoder" / WEIGHTS_NAME))
    assert any(k.startswith("clip_model.text_model.") for k in clip)  # upstream holds the whole CLIPModel
    labels = load_file(str(tiny_repo / LABEL / "label_encoder" / WEIGHTS_NAME))
    assert {k: tuple(v.shape)[0] for k, v in labels.items()} == {
        "embedding_table_tpose.weight": 3, "embedding_table_symmetry_type.weight": 2,
        "embedding_table_geometry_quality.weight": 3}


def test_strict_load_reproduces_saved_tensors(tiny_repo: Path) -> None:
    comps = load_components(tiny_repo / LABEL, dtype=torch.float32)
    saved = load_file(str(tiny_repo / LABEL / "transformer" / WEIGHTS_NAME))
    state = comps.transformer.state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert comps.label_encoder is not None and comps.visual_encoder.with_clip
    assert not any(p.is_meta for p in comps.visual_encoder.parameters())
    assert not any(b.is_meta for b in comps.vae.buffers())  # the Fourier frequencies are real


@pytest.mark.parametrize("subfolder, expect_label", [(BASE, False), (LABEL, True)])
def test_from_pretrained_with_subfolder(tiny_repo: Path, subfolder: str, expect_label: bool) -> None:
    pipe = Step1X3DGeometryPipeline.from_pretrained(tiny_repo, subfolder=subfolder)
    assert (pipe.label_encoder is not None) is expect_label
    for name in ("transformer", "vae", "visual_encoder", "scheduler"):
        assert getattr(pipe, name) is not None
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"


def test_resolve_model_dir(tiny_repo: Path) -> None:
    assert resolve_model_dir(tiny_repo) == tiny_repo / BASE
    assert resolve_model_dir(tiny_repo, variant="label") == tiny_repo / LABEL
    assert resolve_model_dir(tiny_repo / LABEL) == tiny_repo / LABEL
    with pytest.raises(PipelineError) as err:
        resolve_model_dir(tiny_repo / "nowhere")
    assert err.value.code == "weights_missing"


def test_missing_file_is_named(base_copy: Path) -> None:
    (base_copy / "vae" / WEIGHTS_NAME).unlink()
    with pytest.raises(PipelineError) as err:
        load_components(base_copy)
    assert err.value.code == "weights_missing"
    assert str(base_copy / "vae" / WEIGHTS_NAME) in str(err.value)


def test_renamed_key_is_reported_both_ways(base_copy: Path) -> None:
    path = base_copy / "transformer" / WEIGHTS_NAME
    state = load_file(str(path))
    state["dit_model.proj_outt.weight"] = state.pop("dit_model.proj_out.weight")
    save_file(state, str(path))
    with pytest.raises(PipelineError) as err:
        load_components(base_copy)
    msg = str(err.value)
    assert err.value.code == "weights_mismatch"
    assert "missing keys: dit_model.proj_out.weight" in msg and "unexpected keys: dit_model.proj_outt.weight" in msg
    assert str(path) in msg


def test_official_dino_name_missing_is_reported_in_official_spelling(base_copy: Path) -> None:
    path = base_copy / "visual_encoder" / WEIGHTS_NAME
    state = load_file(str(path))
    del state["dino_model.encoder.layer.0.attention.attention.key.weight"]
    save_file(state, str(path))
    with pytest.raises(PipelineError) as err:
        load_components(base_copy)
    assert "dino_model.encoder.layer.0.attention.attention.key.weight" in str(err.value)


def test_config_that_disagrees_with_the_weights(base_copy: Path) -> None:
    cfg_path = base_copy / "vae" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["width"] = 2 * cfg["width"]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(PipelineError) as err:
        load_components(base_copy)
    assert err.value.code == "weights_mismatch" and "shape mismatches" in str(err.value)


def test_legacy_position_ids_are_tolerated(base_copy: Path) -> None:
    path = base_copy / "visual_encoder" / WEIGHTS_NAME
    state = load_file(str(path))
    state["dino_model.embeddings.position_ids"] = torch.arange(5)[None]
    save_file(state, str(path))
    load_components(base_copy)


def test_dtype_choice(tiny_repo: Path) -> None:
    pipe = Step1X3DGeometryPipeline.from_pretrained(tiny_repo / BASE, torch_dtype="bf16")
    assert pipe.dtype == torch.bfloat16
    assert pipe.visual_encoder.dino_model.embeddings.cls_token.dtype == torch.bfloat16
    assert pipe.vae.post_kl.weight.dtype == torch.float32  # decoding stays fp32 by default
    with pytest.raises(PipelineError):
        Step1X3DGeometryPipeline.from_pretrained(tiny_repo / BASE, torch_dtype="int3")


def test_hub_ids_are_refused_not_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def no_network(*_a: object, **_k: object) -> None:
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    with pytest.raises(PipelineError) as err:
        Step1X3DGeometryPipeline.from_pretrained("stepfun-ai/Step1X-3D", subfolder=BASE)
    assert err.value.code == "weights_missing"


def test_unbuildable_config_names_the_file(base_copy: Path) -> None:
    cfg_path = base_copy / "transformer" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["num_heads"] = 5  # width 32 is not a multiple of 5 heads
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(PipelineError) as err:
        load_components(base_copy)
    assert err.value.code == "weights_invalid" and str(cfg_path) in str(err.value)


def test_camera_conditioned_encoder_is_not_implemented(base_copy: Path) -> None:
    cfg_path = base_copy / "visual_encoder" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["encode_camera"] = True
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(PipelineError) as err:
        load_components(base_copy)
    assert err.value.code == "not_implemented"


def test_label_models_clip_text_tower_is_checked_but_never_loaded(tiny_repo: Path) -> None:
    # Upstream holds the whole CLIPModel; only the vision tower conditions the transformer.
    from safetensors.torch import load_file

    from inference_server.neural.geometry.loader import (
        build_empty,
        check_keys,
        load_components,
    )
    from inference_server.neural.geometry.models.condition import ImageConditionEncoder

    folder = tiny_repo / "Step1X-3D-Geometry-Label-1300m"
    comps = load_components(folder, dtype=torch.float32)
    names = [n for n, _ in comps.visual_encoder.named_parameters()]
    assert any(n.startswith("clip_model.vision_model.") for n in names)
    assert not any(n.startswith(ImageConditionEncoder.UNUSED_PREFIXES) for n in names)

    # Same tokens as the whole model loaded without dropping anything.
    file = folder / "visual_encoder" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(file))
    whole = build_empty(ImageConditionEncoder, comps.visual_encoder.config, {k: tuple(v.shape) for k, v in state.items()},
                        True)
    mapping = check_keys(whole, {k: tuple(v.shape) for k, v in state.items()}, file)  # official -> local names
    whole.load_state_dict({local: state[key] for key, local in mapping.items()}, strict=True, assign=True)
    whole.eval()
    assert any(n.startswith("clip_model.text_model.") for n, _ in whole.named_parameters())
    pixels = comps.visual_encoder.pixel_values([Image.new("RGB", (64, 64), (200, 80, 40))])
    assert torch.equal(comps.visual_encoder.encode_pixels(pixels), whole.encode_pixels(pixels))


def test_a_file_without_the_clip_text_tower_is_still_refused(tiny_repo: Path, tmp_path: Path) -> None:
    # Dropping the text tower must not relax the strict check of the file's layout.
    import shutil

    from safetensors.torch import load_file, save_file

    from inference_server.neural.geometry.loader import load_components

    folder = tmp_path / "Step1X-3D-Geometry-Label-1300m"
    shutil.copytree(tiny_repo / "Step1X-3D-Geometry-Label-1300m", folder)
    file = folder / "visual_encoder" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(file))
    save_file({k: v for k, v in state.items() if not k.startswith("clip_model.text_model.")}, str(file))
    with pytest.raises(PipelineError, match="clip_model.text_model"):
        load_components(folder, dtype=torch.float32)

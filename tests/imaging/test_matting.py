"""Learned background removal (``--matting-model``) with tiny ONNX models of the real signatures
(tests/imaging/onnx_tiny_models.py): one ImageNet-normalised RGB input at the model's own size,
one mask output, run with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from inference_server.cli import main  # noqa: E402 - at collection: ProgressBar binds sys.stderr on import
from inference_server.imaging.matting import MattingModel  # noqa: E402
from inference_server.imaging.prepare import prepare_reference  # noqa: E402
from inference_server.pipeline.base import PipelineError  # noqa: E402

from onnx_tiny_models import busy_photo, matting_model  # noqa: E402


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("probabilities,squeeze,size", [(False, False, 64), (True, True, 48), (False, False, None)])
def test_mask_follows_the_model(tmp_path: Path, probabilities: bool, squeeze: bool, size: int | None) -> None:
    model = MattingModel(matting_model(tmp_path / "m.onnx", size, probabilities=probabilities, squeeze=squeeze))
    assert model.model.size == ((size, size) if size else (1024, 1024))  # the model's own input size
    photo, inside = busy_photo()
    alpha = model.alpha(photo)
    assert alpha is not None and alpha.shape == inside.shape and alpha.dtype == np.uint8
    # Background red reaches 99: only ImageNet normalisation puts it below the model's cut (128);
    # un-normalised input would cut near 31 and take the whole background as object.
    assert iou(alpha >= 128, inside) > 0.9
    assert alpha[~inside].mean() < 20 and alpha[inside].mean() > 235


def test_cut_out_only_without_alpha_and_keying_fallback(tmp_path: Path) -> None:
    model = MattingModel(matting_model(tmp_path / "m.onnx"))
    photo, inside = busy_photo()
    cut = model.cut_out(photo)
    assert cut.shape == (*inside.shape, 4) and np.array_equal(cut[..., :3], photo)
    opaque = np.concatenate([photo, np.full((*inside.shape, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(model.cut_out(opaque)[..., 3], cut[..., 3])  # an opaque alpha is no cut-out
    own = opaque.copy()
    own[..., 3] = np.where(inside, 255, 0)
    own[:10, :10, 3] = 255  # the artist's cut-out differs from what the model would say
    assert model.cut_out(own) is own
    # A model that sees nothing leaves the image to colour keying.
    blind = MattingModel(matting_model(tmp_path / "blind.onnx", gain=0.0))
    assert blind.cut_out(photo) is photo
    # So does one that calls everything the object.
    red = photo.copy()
    red[..., 0] = 250
    assert model.cut_out(red) is red


def test_busy_photo_prepares_with_the_model_only(tmp_path: Path) -> None:
    photo, inside = busy_photo()
    with pytest.raises(PipelineError) as info:
        prepare_reference(photo, size=64)
    assert info.value.code == "bad_image"
    model = MattingModel(matting_model(tmp_path / "m.onnx"))
    prepared = prepare_reference(model.cut_out(photo), size=64)
    assert prepared.mask_source == "alpha"
    ys, xs = np.nonzero(inside)
    x0, y0, x1, y1 = prepared.crop_box
    assert abs(x0 - xs.min()) <= 1 and abs(y0 - ys.min()) <= 1
    assert abs(x1 - (xs.max() + 1)) <= 1 and abs(y1 - (ys.max() + 1)) <= 1


def test_bad_model_files_are_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^matting model not found: "):
        MattingModel(tmp_path / "none.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"^cannot load the matting model "):
        MattingModel(junk)


def test_generate_cuts_out_a_busy_photo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo, _ = busy_photo(128, 112)
    image = tmp_path / "photo.png"
    Image.fromarray(photo).save(image)
    common = [str(image), "--backend", "inflate", "--texture-size", "512", "--max-faces", "2000", "--lods", "1", "--geometry-only"]
    assert main(["generate", *common, "-o", str(tmp_path / "a.glb")]) == 1
    assert "background is too busy" in capsys.readouterr().err
    model = matting_model(tmp_path / "m.onnx")
    assert main(["generate", *common, "-o", str(tmp_path / "b.glb"), "--matting-model", str(model)]) == 0
    glb = (tmp_path / "b.glb").read_bytes()
    assert glb[:4] == b"glTF" and len(glb) > 1000
    assert main(["generate", *common, "-o", str(tmp_path / "c.glb"), "--matting-model", str(tmp_path / "x.onnx")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: matting model not found: {tmp_path / 'x.onnx'}"

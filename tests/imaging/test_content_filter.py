"""The content filter (``serve --content-filter``) with a tiny ONNX classifier of the real signature
(tests/imaging/onnx_tiny_models.py): the refused class's probability is closed-form, and a real
server on loopback refuses a job with ``content_refused``, stores nothing and logs no image."""

from __future__ import annotations

import logging
import math
import re
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from blender_addon.client import ServerConnection, StateChanged  # noqa: E402
from blender_addon.protocol.settings import JobSettings  # noqa: E402
from inference_server.cli import main  # noqa: E402 - at collection: ProgressBar binds sys.stderr on import
from inference_server.imaging.content_filter import ContentFilter  # noqa: E402
from inference_server.pipeline.preparation import REFUSED_MESSAGE  # noqa: E402
from onnx_tiny_models import GAIN, classifier_model  # noqa: E402
from tests.server.harness import ServerProcess, collect, png_bytes, wait_ready  # noqa: E402

LABELS = "# the tiny classifier's two outputs\nallow neutral\n\nrefuse red   # anything mostly red\n"


def uniform(red: int) -> np.ndarray:
    img = np.zeros((40, 40, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = red, 90, 90
    return img


def expected_probability(red: int) -> float:
    # softmax([0, GAIN * (normalised red - normalised 128)]) of a uniform image.
    z = GAIN * ((red - 128) / 255.0 / 0.229)
    return 1.0 / (1.0 + math.exp(-z))


@pytest.fixture()
def root_logging():
    """`serve` configures the root logger onto this test's captured stderr: undo that afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    labels = tmp_path / "labels.txt"
    labels.write_text(LABELS)
    return {"labels": labels, "logits": classifier_model(tmp_path / "c.onnx"),
            "probs": classifier_model(tmp_path / "p.onnx", probabilities=True)}


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_refusal_follows_the_threshold(files: dict[str, Path], kind: str) -> None:
    strict = ContentFilter(files[kind], files["labels"], threshold=0.5)
    assert strict.labels == [("neutral", False), ("red", True)]
    assert strict.check([uniform(90), uniform(120)]) is None
    p = expected_probability(129)  # 0.70: just above the model's cut
    assert 0.6 < p < 0.8
    refusal = strict.check([uniform(90), uniform(129)])
    assert refusal is not None and refusal.label == "red" and refusal.image_index == 1
    assert refusal.score == pytest.approx(p, abs=2e-3)
    assert ContentFilter(files[kind], files["labels"], threshold=0.75).check([uniform(129)]) is None


def test_bad_labels_and_models_are_one_sentence(files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("allow neutral\nblock red\n")
    with pytest.raises(ValueError, match=r"bad.txt line 2: write 'allow NAME' or 'refuse NAME'"):
        ContentFilter(files["logits"], bad)
    bad.write_text("allow neutral\nallow red\n")
    with pytest.raises(ValueError, match=r"refuses no label"):
        ContentFilter(files["logits"], bad)
    bad.write_text("allow neutral\nrefuse red\nrefuse blue\n")
    with pytest.raises(ValueError, match=r"the content filter model has 2 classes but .* names 3"):
        ContentFilter(files["logits"], bad)
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        ContentFilter(files["logits"], files["labels"], threshold=0.0)


def _terminal(conn: ServerConnection, jid: str) -> StateChanged:
    done = {"done", "failed", "cancelled", "expired"}
    events = collect(conn, lambda e: isinstance(e, StateChanged) and e.job_id == jid and e.state in done, 30.0)
    return events[-1]


def test_server_refuses_and_keeps_nothing(files: dict[str, Path], tmp_path: Path) -> None:
    results = tmp_path / "results"
    server = ServerProcess(results, "--content-filter", str(files["logits"]), "--content-filter-labels",
                           str(files["labels"]), backend="tests.server.pipelines:FastPipeline")
    try:
        welcome = wait_ready(server.address)
        assert welcome.content_filter is True
        assert welcome.backends[welcome.active_backend]["content_filter"] is True
        with ServerConnection(server.address) as conn:
            conn.hello()
            refused, passed = f"cf-{uuid.uuid4().hex[:8]}", f"cf-{uuid.uuid4().hex[:8]}"
            conn.submit(refused, [png_bytes(48, (240, 90, 90))], JobSettings())
            state = _terminal(conn, refused)
            assert (state.state, state.code, state.message, state.retryable) == (
                "failed", "content_refused", REFUSED_MESSAGE, False)
            conn.submit(passed, [png_bytes(48, (90, 90, 90))], JobSettings())
            assert _terminal(conn, passed).state == "done"
        stored = [p.name for p in results.rglob("*") if p.is_file()]
        assert not [n for n in stored if refused in n] and [n for n in stored if passed in n]
    finally:
        _, err = server.stop()
    lines = [ln for ln in err.splitlines() if "content filter refused" in ln]
    assert len(lines) == 1 and re.search(r"content filter refused a job: image 1 scored 1\.000 for 'red'$", lines[0])


def test_serve_refuses_a_bad_configuration_at_start(files: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str], root_logging: None) -> None:
    base = ["serve", "--port", "0", "--results-dir", str(tmp_path / "r")]
    assert main([*base, "--content-filter", str(files["logits"])]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --content-filter needs --content-filter-labels FILE (the classes it refuses)")
    bad = tmp_path / "three.txt"
    bad.write_text("allow a\nrefuse b\nrefuse c\n")
    assert main([*base, "--content-filter", str(files["logits"]), "--content-filter-labels", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == f"error: the content filter model has 2 classes but {bad} names 3"
    assert main([*base, "--matting-model", str(tmp_path / "none.onnx")]) == 2
    assert capsys.readouterr().err.strip() == f"error: matting model not found: {tmp_path / 'none.onnx'}"


def test_panel_status_line_says_the_filter_is_on() -> None:
    from blender_addon.client.events import Welcome
    from blender_addon.client.session import server_info

    def welcome(**extra: object) -> Welcome:
        return Welcome(server_version="1", protocol_version=(1, 0), backends={}, active_backend="inflate",
                       limits={}, device="cpu", **extra)  # type: ignore[arg-type]

    assert server_info(welcome(content_filter=True)).line({"running": False}) == (
        "Connected: inflate on cpu, idle; content filter on")
    assert server_info(welcome()).line() == "Connected: inflate on cpu"

"""``step1x3d generate --option NAME=VALUE`` and the older option flags, mapped into the options map."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from inference_server.cli import build_parser
from inference_server.cli.generate import settings_from_args
from tests.cli.test_cli import FAST, assert_one_line_error, step1x3d
from tests.server.harness import ServerProcess, png_bytes, running_server


def _settings(*extra: str) -> dict:
    args = build_parser().parse_args(["generate", "front.png", "-o", "out.glb", *extra])
    return settings_from_args(args).options


def test_option_values_are_typed_and_the_last_one_wins() -> None:
    got = _settings("--option", "octree_resolution=256", "--option", "mirror_front_detail=true",
                    "--option", "inflate_depth=0.5", "--option", "lora=ink", "--option", "lora=clay")
    assert got == {"octree_resolution": 256, "mirror_front_detail": True, "inflate_depth": 0.5, "lora": "clay"}
    assert isinstance(got["octree_resolution"], int) and isinstance(got["inflate_depth"], float)


def test_the_older_flags_are_shorthands_for_options() -> None:
    assert _settings() == {}  # nothing given: the backend's own defaults apply
    assert _settings("--inflate-depth", "0.4", "--mirror-front-detail") == {
        "inflate_depth": 0.4, "mirror_front_detail": True}
    assert _settings("--inflate-depth", "0.4", "--option", "inflate_depth=0.6") == {"inflate_depth": 0.6}


def test_a_malformed_option_is_a_usage_error() -> None:
    proc = step1x3d("generate", "front.png", "-o", "out.glb", "--option", "no-equals-sign")
    assert proc.returncode == 2 and "expected NAME=VALUE, got 'no-equals-sign'" in proc.stderr


@pytest.mark.parametrize(
    ("option", "text"),
    [
        ("colour=red", "the inflate backend has no option colour (its options: inflate_depth, mirror_front_detail, "
                       "octree_resolution)"),
        ("inflate_depth=5", "option inflate_depth must be between 0.05 and 2.0, got 5"),
    ],
)
def test_an_option_the_weight_free_backend_does_not_have_fails_in_one_line(tmp_path: Path, option: str,
                                                                           text: str) -> None:
    image = tmp_path / "front.png"
    image.write_bytes(png_bytes())
    out = tmp_path / "out.glb"
    proc = step1x3d("generate", str(image), "-o", str(out), "--option", option)
    assert_one_line_error(proc, 1, text)
    assert not out.exists()


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("cli-option-results"), backend=FAST)


def test_options_reach_a_remote_server_which_checks_them(scripted_server: ServerProcess, tmp_path: Path) -> None:
    image = tmp_path / "front.png"
    image.write_bytes(png_bytes())
    out = tmp_path / "out.glb"
    # The scripted test backend declares one option, "behaviour"; the server checks it at submit.
    ok = step1x3d("generate", str(image), "-o", str(out), "--server", scripted_server.address,
                  "--option", "behaviour=fast")
    assert ok.returncode == 0, ok.stderr
    assert out.read_bytes()[:4] == b"glTF"
    bad = step1x3d("generate", str(image), "-o", str(tmp_path / "bad.glb"), "--server", scripted_server.address,
                   "--inflate-depth", "0.5")
    assert_one_line_error(bad, 1, "the server's backend has no option inflate_depth (its options: behaviour)")
    assert not (tmp_path / "bad.glb").exists()

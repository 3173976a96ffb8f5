"""``step1x3d`` end to end: generate (remote and in-process), failures as one line, keys."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.server.harness import REPO, ServerProcess, png_bytes, running_server

FAST = "tests.server.pipelines:FastPipeline"


def step1x3d(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("STEP1X3D_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "inference_server.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and text in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("cli-results"), backend=FAST)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "front.png"
    path.write_bytes(png_bytes())
    return path


def test_generate_remote_writes_glb_and_shows_progress(server: ServerProcess, image: Path, tmp_path: Path) -> None:
    out = tmp_path / "asset.glb"
    proc = step1x3d("generate", str(image), "-o", str(out), "--server", server.address, "--seed", "4")
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:4] == b"glTF"
    from tests.gltf_validator import validate_glb

    report = validate_glb(data)
    assert report["errors"] == 0, report["messages"]
    assert proc.stdout.startswith(f"wrote {out} in ")
    # Not a terminal: plain lines "[ NN%] stage ..." instead of a redrawn bar, the overall
    # fraction never running backwards across stages.
    lines = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    stages = [line[7:].split()[0] for line in lines]
    assert stages.index("geometry") < stages.index("texture")
    percents = [int(line[1:4]) for line in lines]
    assert percents == sorted(percents) and all(line.strip() for line in proc.stderr.splitlines())


def test_generate_remote_obj_goes_through_save_asset(server: ServerProcess, image: Path, tmp_path: Path) -> None:
    out = tmp_path / "asset.obj"
    proc = step1x3d("generate", str(image), "-o", str(out), "--server", server.address)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and b"\nf " in out.read_bytes()


def test_generate_in_process(image: Path, tmp_path: Path) -> None:
    out = tmp_path / "local.glb"
    proc = step1x3d("generate", str(image), "-o", str(out), "--backend", FAST, "--lods", "1,0.5")
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:4] == b"glTF"
    from tests.gltf_validator import validate_glb

    report = validate_glb(data)
    assert report["errors"] == 0, report["messages"]


def test_generate_without_server_says_how_to_start_it(image: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = step1x3d("generate", str(image), "-o", str(tmp_path / "x.glb"), "--server", f"tcp://127.0.0.1:{port}",
                    "--connect-timeout", "1.5")
    assert_one_line_error(proc, 1, f"start one with 'step1x3d serve --port {port}'")


def test_generate_bad_image_remote_and_local(server: ServerProcess, tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    proc = step1x3d("generate", str(bad), "-o", str(tmp_path / "x.glb"), "--server", server.address)
    assert_one_line_error(proc, 1, "notes.png is not a PNG, JPEG or WebP file.")
    proc = step1x3d("generate", str(bad), "-o", str(tmp_path / "x.glb"), "--backend", FAST)
    assert_one_line_error(proc, 1, "notes.png is not a PNG, JPEG or WebP file.")


@pytest.mark.parametrize(("args", "code", "text"), [
    (["--geometry-only", "--mesh", "m.obj"], 2, "exclude each other"),
    (["--steps", "0"], 2, "steps must be between 1 and 200, got 0"),
    (["-o", "out.xyz"], 2, "output must end in .glb, .gltf, .obj, .ply, .stl, .3mf, .usd"),
])
def test_bad_arguments(image: Path, tmp_path: Path, args: list[str], code: int, text: str) -> None:
    out = ["-o", str(tmp_path / "x.glb")] if "-o" not in args else []
    proc = step1x3d("generate", str(image), *out, *[str(tmp_path / a) if a.endswith((".obj", ".xyz")) else a for a in args])
    assert_one_line_error(proc, code, text)


def test_missing_image_file(tmp_path: Path) -> None:
    proc = step1x3d("generate", str(tmp_path / "nope.png"), "-o", str(tmp_path / "x.glb"), "--backend", FAST)
    assert_one_line_error(proc, 1, f"cannot read image {tmp_path / 'nope.png'}")


def test_texture_only_with_mesh_file(server: ServerProcess, image: Path, tmp_path: Path) -> None:
    trimesh = pytest.importorskip("trimesh")
    mesh_path = tmp_path / "box.obj"
    trimesh.creation.box().export(mesh_path)
    out = tmp_path / "painted.glb"
    proc = step1x3d("generate", str(image), "--mesh", str(mesh_path), "-o", str(out), "--server", server.address)
    assert proc.returncode == 0, proc.stderr
    loaded = trimesh.load(out, force="mesh")
    assert len(loaded.faces) == 12


def test_keys(tmp_path: Path) -> None:
    proc = step1x3d("keys", "--dir", str(tmp_path), "--name", "laptop")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "laptop.key").is_file()
    secret = tmp_path / "laptop.key_secret"
    assert secret.is_file() and secret.stat().st_mode & 0o777 == 0o600
    assert "public key:" in proc.stdout


def test_quick_start_example_in_process(tmp_path: Path) -> None:
    """The README's first command: the bundled example through the weight-free default backend."""
    example = REPO / "examples" / "apple.png"
    assert example.is_file(), "the README's quick start needs examples/apple.png"
    out = tmp_path / "apple.glb"
    proc = step1x3d("generate", str(example), "-o", str(out), "--texture-size", "512", "--max-faces", "20000",
                    timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:4] == b"glTF"
    from tests.gltf_validator import validate_glb

    report = validate_glb(data)
    assert report["errors"] == 0, report["messages"]
    import trimesh

    scene = trimesh.load(out, force="scene")
    mesh = next(iter(scene.geometry.values()))
    assert 1_000 < len(mesh.faces) <= 20_000  # the face budget was honoured
    assert mesh.visual.material.baseColorTexture.size == (512, 512)


def test_progress_bar_on_a_terminal() -> None:
    import io

    from inference_server.cli import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = ProgressBar(stream, width=10)
    bar.update("geometry", 15, 50, 0.3, 75.0)
    bar.update("texture", 50, 50, 1.0, None)
    bar.finish()
    out = stream.getvalue()
    assert out.startswith("\r[###-------]  30%  geometry 15/50, about 1:15 left")
    assert "\r[##########] 100%  texture 50/50" in out and out.endswith("\n")


def test_progress_without_a_terminal_is_one_line_per_stage_and_decile() -> None:
    import io

    from inference_server.cli import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar.update("", 0, 1, 0.0, None)  # an unnamed stage still gets a word, never an empty line
    for step in range(0, 101):
        bar.update("texture", step, 100, 0.2 + 0.5 * step / 100, 30.0 if step else None)
    bar.update("pbr", 0, 1, 0.7, 9.0)
    bar.update("pbr", 1, 1, 1.0, 0.0)
    bar.finish()
    lines = stream.getvalue().split("\n")
    assert lines[-1] == "" and all(line.strip() for line in lines[:-1])
    assert lines[0] == "[  0%] working"
    texture = [line for line in lines if "texture" in line]
    assert len(texture) == 11  # 0, 10, ..., 100 %: one line per decile of the stage's steps
    assert texture[0] == "[ 20%] texture 0/100" and texture[-1].startswith("[ 70%] texture 100/100")
    assert lines[-2] == "[ 70%] pbr, about 9 s left"  # one line for the stage, not per update


def test_every_option_of_every_command_says_what_it_does_and_its_default() -> None:
    import argparse

    from inference_server.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"serve", "generate", "keys"} <= set(commands)
    for name, command in commands.items():
        text = command.format_help()
        for action in command._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"step1x3d {name} {action.option_strings[0]} has no help text"
            shown = action.default is None or action.default is False or action.default in ((), [])
            if not shown:  # a real default: the help states it
                assert "default" in command._get_formatter()._get_help_string(action), (name, action.dest)
        assert "(default: %(default)s)" not in text  # the formatter expanded every default


def test_generate_help_states_the_view_order_and_camera_convention() -> None:
    out = step1x3d("generate", "--help").stdout
    flat = " ".join(out.split())
    assert "FRONT camera sits on +Z" in flat and "RIGHT sits on +X" in flat and "LEFT on -X" in flat
    assert "--front" in out and "--right" in out and "--back" in out and "--left" in out


def test_named_views_are_sent_in_view_order(tmp_path: Path) -> None:
    from inference_server.cli import build_parser
    from inference_server.cli.generate import image_paths

    from inference_server.cli.generate import settings_from_args

    front, right, back = tmp_path / "f.png", tmp_path / "r.png", tmp_path / "b.png"
    args = build_parser().parse_args(["generate", "--right", str(right), "--front", str(front), "-o", "x.glb"])
    assert image_paths(args) == [front, right]
    gap = build_parser().parse_args(["generate", "--back", str(back), "--front", str(front), "-o", "x.glb"])
    assert image_paths(gap) == [front, back] and settings_from_args(gap).views == ("front", "back")
    positional = build_parser().parse_args(["generate", str(front), str(right), "-o", "x.glb"])
    assert settings_from_args(positional).views == ()
    both = build_parser().parse_args(["generate", str(front), "--front", str(front), "-o", "x.glb"])
    with pytest.raises(Exception, match="either positionally or with --front"):
        image_paths(both)
    no_front = build_parser().parse_args(["generate", "--right", str(right), "-o", "x.glb"])
    with pytest.raises(Exception, match="--front is required"):
        image_paths(no_front)

"""One error type: an unregistered code is refused, and the CLI's exit status follows the code.

(That every code the source raises is registered is tests/protocol/test_error_registry.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from blender_addon.protocol.errors import ERROR_CODES, Step1X3DError
from inference_server.cli import main
from inference_server.cli.errors import EXIT_STATUS, exit_status

def test_an_unregistered_code_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="not in ERROR_CODES"):
        Step1X3DError("x", "no_such_code")
    assert Step1X3DError("x").code == "internal_error"


def test_exit_statuses_come_from_one_table_of_registered_codes() -> None:
    assert set(EXIT_STATUS) <= set(ERROR_CODES)
    assert exit_status("usage") == 2 and exit_status("startup_failed") == 2 and exit_status("cancelled") == 130
    assert exit_status("bad_file") == 1 and exit_status("pipeline_error") == 1


def test_the_cli_exits_with_the_status_of_the_failures_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A wrong command line: usage, exit 2, one line.
    assert main(["convert", str(tmp_path / "missing.glb"), str(tmp_path / "out.obj")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.glb'} does not exist\n"
    # A file that is not a GLB: bad_file, raised by the reader itself (no CLI wrapper), exit 1.
    fake = tmp_path / "fake.glb"
    fake.write_bytes(b"PK\x03\x04 not a glb")
    assert main(["convert", str(fake), str(tmp_path / "out.obj")]) == 1
    assert capsys.readouterr().err == "error: fake.glb is not a binary glTF (.glb) file\n"
    assert not (tmp_path / "out.obj").exists()


def test_one_line_words_every_error_of_the_family_by_its_own_sentence() -> None:
    from blender_addon.client.curve import CurveKeyError
    from blender_addon.client.session import JobFailed
    from blender_addon.protocol.options import SettingsError
    from inference_server.cli.errors import one_line

    for exc in (JobFailed("the job failed", "bad_mesh"), CurveKeyError("key file k does not exist"),
                SettingsError("seed must be a number"), Step1X3DError("plain", "export_failed"), ValueError("v")):
        assert one_line(exc) == str(exc) == exc.args[0]
    assert SettingsError("seed must be a number").code == "bad_settings"  # its family's code, from default_code
    assert one_line(FileNotFoundError(2, "No such file or directory", "x.png")) == "No such file or directory: x.png"
    assert one_line(KeyError("k")).startswith("unexpected KeyError: 'k'")

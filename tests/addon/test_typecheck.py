"""The add-on type-checks against fake-bpy-module (Blender's API stubs)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_against_fake_bpy_module(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    try:
        metadata.distribution("fake-bpy-module")
    except metadata.PackageNotFoundError:
        pytest.skip("needs fake-bpy-module (the bpy stubs)")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--python-version", "3.11", "--disallow-untyped-defs", "--check-untyped-defs",
         "--warn-unused-ignores", "--disable-error-code", "import-untyped", "--cache-dir", str(tmp_path),
         "blender_addon", "build_addon.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]

"""Type hints everywhere: the server side and the kernels pass mypy with untyped defs disallowed.

(The add-on is checked against fake-bpy-module in tests/addon/test_typecheck.py.)
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_inference_server_and_kernels() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--disallow-untyped-defs", "--no-incremental", "inference_server"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Success" in proc.stdout

"""CURVE: allowed keys get in, unknown keys and plain-text clients are refused; LAN binds need CURVE."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from blender_addon.client import CurveKeys, ErrorEvent, ServerConnection, Welcome
from inference_server.server.security import create_keypair

from .harness import REPO, ServerProcess, collect, wait_ready


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    allowed = root / "allowed"
    _, server_secret = create_keypair(root / "server", "server")
    client_public, client_secret = create_keypair(root / "client", "laptop")
    _, stranger_secret = create_keypair(root / "stranger", "stranger")
    allowed.mkdir()
    (allowed / client_public.name).write_bytes(client_public.read_bytes())
    assert oct(server_secret.stat().st_mode & 0o777) == "0o600"
    return {
        "server_secret": server_secret,
        "server_public": root / "server" / "server.key",
        "client_secret": client_secret,
        "stranger_secret": stranger_secret,
        "allowed": allowed,
    }


def test_curve_admits_allowed_key_and_refuses_unknown(keys: dict[str, Path], tmp_path: Path) -> None:
    args = ("--server-key", str(keys["server_secret"]), "--allow-keys", str(keys["allowed"]))
    with ServerProcess(tmp_path / "results", *args) as server:
        good = CurveKeys.load(keys["client_secret"], keys["server_public"])
        welcome = wait_ready(server.address, curve=good)
        assert isinstance(welcome, Welcome)

        stranger = CurveKeys.load(keys["stranger_secret"], keys["server_public"])
        with ServerConnection(server.address, curve=stranger, offline_after_s=2.0) as conn:
            conn.hello()
            events = collect(conn, lambda e: isinstance(e, ErrorEvent), timeout_s=5.0)
            assert not [e for e in events if isinstance(e, Welcome)]
            assert events[-1].code == "auth_refused"
            assert "allow-keys" in events[-1].message

        with ServerConnection(server.address) as plain:  # no encryption at all
            plain.hello()
            deadline = time.monotonic() + 1.5
            heard = []
            while time.monotonic() < deadline:
                heard += [e for e in plain.poll(50) if isinstance(e, Welcome)]
            assert heard == []


def test_network_bind_without_curve_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "inference_server.cli", "serve", "--host", "0.0.0.0", "--port", "0",
         "--results-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: binding 0.0.0.0 exposes the server")
    assert "step1x3d keys" in lines[0]

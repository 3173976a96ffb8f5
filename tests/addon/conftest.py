"""Fixtures for the add-on tests: an isolated Blender user folder, the add-on enabled, a real server.

Blender reads ``BLENDER_USER_RESOURCES`` once, when ``bpy`` is first imported,
so it is set here at collection time, before any test module imports ``bpy``.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
_USER_ROOT = Path(tempfile.mkdtemp(prefix="step1x3d-blender-user-"))
os.environ.setdefault("BLENDER_USER_RESOURCES", str(_USER_ROOT / "blender"))
os.environ.setdefault("STEP1X3D_USER_DIR", str(_USER_ROOT / "addon"))

ADDON = "blender_addon"


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    shutil.rmtree(_USER_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def bpy() -> Any:
    return pytest.importorskip("bpy", reason="needs the bpy wheel (pip install 'bpy==4.5.*')")


def clean_scene(bpy: Any) -> None:
    """Remove everything a test may have added (objects, meshes, materials, images, collections)."""
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for coll in (bpy.data.meshes, bpy.data.materials, bpy.data.collections):
        for block in list(coll):
            coll.remove(block)
    for image in list(bpy.data.images):
        if image.type == "IMAGE":
            bpy.data.images.remove(image)


def scene_snapshot(bpy: Any) -> dict[str, list[str]]:
    """Names of every datablock an import could create: equal snapshots mean an untouched scene."""
    return {
        "objects": sorted(o.name for o in bpy.data.objects),
        "meshes": sorted(m.name for m in bpy.data.meshes),
        "materials": sorted(m.name for m in bpy.data.materials),
        "images": sorted(i.name for i in bpy.data.images),
        "collections": sorted(c.name for c in bpy.data.collections),
    }


@pytest.fixture
def addon(bpy: Any) -> Iterator[Any]:
    """The add-on enabled from this checkout; yields its preferences. Disabled (sockets closed) after."""
    import addon_utils

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    clean_scene(bpy)
    addon_utils.enable(ADDON, default_set=True)
    # Panel state lives on the WindowManager ID and outlives a disable/enable: start each test from defaults.
    bpy.context.window_manager.property_unset("step1x3d")
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.connect_timeout_s = 5.0
    try:
        yield prefs
    finally:
        addon_utils.disable(ADDON, default_set=True)
        clean_scene(bpy)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m inference_server.cli serve`` on an ephemeral loopback port."""

    def __init__(self, backend: str, results_dir: Path, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inference_server.cli", "serve", "--host", "127.0.0.1", "--port", "0",
             "--backend", backend, "--results-dir", str(results_dir), "--shutdown-grace", "1",
             "--log-level", "WARNING", *extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.address = self._read_address(timeout_s=60.0)

    def _read_address(self, timeout_s: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                if "listening on" in line:
                    return line.strip().rsplit(" ", 1)[-1]
                if not line and self.proc.poll() is not None:
                    break
        err = self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""
        self.stop()
        raise RuntimeError(f"the test server did not start: {err.strip()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A factory: ``start_server(backend, *extra_args) -> address`` (one server per backend and arguments,
    reused within the module); every server is stopped when the module ends, whatever happened."""
    servers: dict[tuple[str, ...], ServerProcess] = {}

    def start(backend: str, *extra: str) -> str:
        key = (backend, *extra)
        if key not in servers or servers[key].proc.poll() is not None:
            servers[key] = ServerProcess(backend, tmp_path_factory.mktemp("results"), *extra)
        return servers[key].address

    try:
        yield start
    finally:
        for server in servers.values():
            server.stop()

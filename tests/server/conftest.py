from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from blender_addon.client import ServerConnection

from .harness import ServerProcess, running_server

# Small limits so oversize messages are cheap to build; a short queue so "busy" is reachable.
SHARED_LIMITS = ("--limit", "max_frame_bytes=1048576", "--limit", "max_total_bytes=4194304",
                 "--limit", "max_images=3", "--limit", "max_image_pixels=1000000", "--queue-size", "2")


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("shared-results"), *SHARED_LIMITS)


@pytest.fixture
def conn(shared_server: ServerProcess) -> Iterator[ServerConnection]:
    connection = ServerConnection(shared_server.address)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"

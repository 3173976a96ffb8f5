"""The server's handler table: every message a client may send has exactly one handler, found by its class."""

from __future__ import annotations

from pathlib import Path

from blender_addon.protocol import messages as m
from inference_server.server.config import ServerConfig
from inference_server.server.server import JobServer


def test_every_client_message_class_has_one_handler_and_nothing_else_has_one(tmp_path: Path) -> None:
    server = JobServer(ServerConfig(backend="inflate", results_dir=tmp_path))  # not started: no socket, no worker
    table = server._handlers
    assert set(table) == set(m.CLIENT_MESSAGES)
    assert not set(table) & set(m.SERVER_MESSAGES)
    # Each entry is the handler named for its message, bound to this server.
    for cls, handler in table.items():
        assert handler.__self__ is server and handler.__name__ == f"_on_{cls.TYPE}", (cls, handler)

"""The server's ``ray`` engine: the gateway's side of the Ray bridge process.

It speaks the local worker's pipe protocol (``run`` with the encoded images after it, ``release``,
``stop``; reports ``ready``, ``progress``, ``done``, ``failed``, ``cancelled``, ``released``), plus
``("cancel", job_id)`` to the bridge and ``("unavailable", sentence, retry_after_s)`` from it.
Ray is never imported in the gateway's process.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing as mp
import time
from typing import Any

from blender_addon.protocol.schema import WireMessage

from ..server import pipe
from ..server.config import ServerConfig
from ..server.engine import Engine
from ..server.pipe import PipeEnd
from .serve_config import DEFAULT_APP_NAME, default_config, load, our_app, slots


def bridge_settings(config: ServerConfig) -> dict[str, Any]:
    """What the bridge process needs: the cluster, the application (from the config file or defaults)."""
    options = dict(config.backend_options)
    weights = str(config.weights) if config.weights else None
    serve_config = load(config.serve_config) if config.serve_config else default_config(config.backend, weights, options)
    app = our_app(serve_config)
    # Flags fill in what the file leaves out (a file without args serves the --backend given here).
    app["args"] = {"backend": config.backend, "weights": weights, "options": options, **app["args"]}
    return {
        "address": config.ray_address,
        "app": app,
        "app_name": app.get("name", DEFAULT_APP_NAME),
        "results_dir": str(config.results_dir),
        "retries": int(config.engine_retries),
        "log_level": logging.getLogger().getEffectiveLevel(),
    }


class RayEngine(Engine):
    """Jobs run on Ray Serve replicas; this process only relays (the bridge is the Ray driver)."""

    def __init__(self, config: ServerConfig) -> None:
        if importlib.util.find_spec("ray") is None or importlib.util.find_spec("yaml") is None:
            raise ValueError("--engine ray needs the 'ray' extra: pip install 'step1x3d-blender[ray]'")
        from .bridge import bridge_main  # no Ray import at module level there either

        settings = bridge_settings(config)
        ctx = mp.get_context("spawn")  # never fork: the parent holds ZeroMQ sockets and threads
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.pipe = PipeEnd(self.conn)
        self.cancel_event = ctx.Event()  # unused: cancels are per job (cancel())
        self.process = ctx.Process(target=bridge_main, args=(child_conn, settings), name="step1x3d-ray-bridge", daemon=True)
        self.process.start()
        child_conn.close()  # so that the bridge's death reads as EOF on our end
        self.started = time.monotonic()
        self.ready = False
        self.retiring = False
        self.name = str(settings["app"]["args"].get("backend"))
        self.capabilities: dict[str, Any] = {}
        self.device = "unknown"
        self.slots = slots(settings["app"])
        self.unavailable: tuple[str, float] | None = None
        self._cancels_sent: set[str] = set()

    def cancel(self, job_id: str) -> None:
        if job_id not in self._cancels_sent:  # the server repeats cancel() every tick; send it once
            self._cancels_sent.add(job_id)
            self.send(pipe.CancelJob(job_id))

    def receive(self) -> tuple[list[WireMessage], bool]:
        messages, alive = super().receive()
        relayed: list[WireMessage] = []
        for msg in messages:
            if isinstance(msg, pipe.Unavailable):
                # Not a load failure: the cluster may come back. Keep the loading watchdog quiet meanwhile.
                self.unavailable = (msg.message, msg.retry_after_s)
                self.ready = False
                self.started = time.monotonic()
            else:
                if isinstance(msg, pipe.Ready):
                    self.unavailable = None
                elif isinstance(msg, (pipe.JobDone, pipe.JobFailure, pipe.JobCancelled)):
                    self._cancels_sent.discard(msg.job_id)  # the id may be submitted (and cancelled) again later
                relayed.append(msg)
        return relayed, alive


__all__ = ["RayEngine", "bridge_settings"]

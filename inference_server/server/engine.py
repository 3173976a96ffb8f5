"""Engines: what runs the jobs the server (``server.py``) queues.

The server talks to its engine through one small interface, the one the local worker
always had (``WorkerHandle``): ``run(job_id, request, want_glb)``, ``receive()`` for the
engine's reports (``ready``, ``progress``, ``done``, ``failed``, ``cancelled``, ...),
``fileno()`` to poll, ``send(("release",))``, ``kill()``/``stop()``; plus:

* ``slots``: how many jobs it runs at once (the server keeps that many running);
* ``cancel(job_id)``: stop that job between steps (idempotent; the server repeats it each tick
  while a running job has a cancel pending);
* ``unavailable``: ``(sentence, retry_after_s)`` while the engine cannot take jobs for a reason
  that passes (a lost Ray cluster); the server then answers submits ``busy`` with that hint.

Engines: ``local`` (one supervised worker process on this machine, one job at a time: the
default) and ``ray`` (``inference_server.scale``: the jobs run on Ray Serve replicas).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .worker import WorkerHandle

if TYPE_CHECKING:
    from .config import ServerConfig

ENGINES = ("local", "ray")


class Engine(WorkerHandle):
    """The local engine: today's supervised worker process, one job at a time."""

    slots: int = 1
    unavailable: tuple[str, float] | None = None

    def cancel(self, job_id: str) -> None:
        # One job at a time: the worker's shared event means "the running job".
        self.cancel_event.set()


def create_engine(config: "ServerConfig") -> Engine:
    engine = config.engine
    if engine == "ray":
        from ..scale.engine import RayEngine  # Ray itself is imported only in the engine's own process

        return RayEngine(config)
    if engine != "local":
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return Engine(config.backend, config.weights, config.results_dir, dict(config.backend_options))


__all__ = ["ENGINES", "Engine", "create_engine"]

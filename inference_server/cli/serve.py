"""``step1x3d serve``: run the job server."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from blender_addon.protocol.limits import Limits

from blender_addon.protocol.errors import Step1X3DError

from .. import __version__
from .args import (
    add_backend_args,
    add_content_filter_args,
    add_matting_arg,
    backend_options,
    limit,
    positive_int,
    preparation_options,
)
from .errors import usage_error


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the job server (clients: the Blender add-on, `generate --server`)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback needs CURVE keys")
    serve.add_argument("--port", type=int, default=5555, help="TCP port (0: pick a free one and print it)")
    add_backend_args(serve)
    add_matting_arg(serve)
    add_content_filter_args(serve)
    serve.add_argument("--results-dir", type=Path, default=None, help="where finished results are kept (default: ~/.cache/step1x3d/results)")
    serve.add_argument("--server-key", type=Path, default=None, help="CURVE: this server's .key_secret file")
    serve.add_argument("--allow-keys", type=Path, default=None, help="CURVE: folder of allowed client .key files")
    serve.add_argument("--queue-size", type=positive_int, default=None, help="jobs allowed to wait (default: 8)")
    serve.add_argument("--result-ttl-hours", type=float, default=24.0, help="delete unfetched results after this")
    serve.add_argument("--shutdown-grace", type=float, default=10.0, help="seconds a running job gets on SIGTERM")
    serve.add_argument("--orphan-grace", type=float, default=60.0, metavar="SECONDS",
                       help="cancel a queued or running job once no client has been connected to it this long "
                            "(its result is discarded; a client that re-attaches sooner keeps it; 0: never; default 60)")
    serve.add_argument("--min-free-mib", type=float, default=512.0, metavar="MIB",
                       help="refuse new jobs (disk_full) while the results folder's disk has less free space "
                            "than this (default 512; 0: never)")
    serve.add_argument("--limit", type=limit, action="append", default=[], metavar="NAME=N",
                       help=f"override a protocol limit ({', '.join(Limits().to_wire())})")
    serve.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                       help="how much the server logs to stderr")
    scale = serve.add_argument_group("scale-out on Ray Serve (the 'ray' extra; docs/scaling.md)")
    scale.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: one worker process here; ray: jobs run on Ray Serve replicas (default: local)")
    scale.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                       help="ray: the cluster's head node (default: start a local Ray)")
    scale.add_argument("--serve-config", type=Path, default=None, metavar="FILE",
                       help="ray: a Ray Serve config file (replicas, autoscaling, GPUs per stage; "
                            "default: one replica per stage)")
    scale.add_argument("--ray-retries", type=int, default=0, metavar="N",
                       help="ray: run a job again up to N times when its replica dies mid-job "
                            "(default: 0, the job fails with a retryable reason)")
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..server.config import ServerConfig, default_results_dir
    from ..server.server import JobServer, StartupError

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    overrides = dict(args.limit)
    if args.queue_size is not None:
        overrides["max_queue"] = args.queue_size
    try:
        limits = Limits().with_overrides(overrides)
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    _check_weights(args)
    _check_preparation(args)
    config = ServerConfig(
        host=args.host,
        port=args.port,
        backend=args.backend,
        weights=args.weights,
        results_dir=args.results_dir or default_results_dir(),
        limits=limits,
        server_key=args.server_key,
        allow_keys=args.allow_keys,
        result_ttl_s=args.result_ttl_hours * 3600.0,
        shutdown_grace_s=args.shutdown_grace,
        orphan_grace_s=args.orphan_grace,
        min_free_bytes=int(args.min_free_mib * 1024 * 1024),
        backend_options=backend_options(args) | preparation_options(args),
        engine=args.engine,
        ray_address=args.ray_address,
        serve_config=args.serve_config,
        engine_retries=max(0, args.ray_retries),
    )
    try:
        server = JobServer(config)
        server.start()
    except (ValueError, StartupError, Step1X3DError) as exc:
        raise Step1X3DError(str(exc), "startup_failed") from None
    # One machine-readable line on stdout (tests and scripts read the port from it).
    print(f"step1x3d server {__version__} listening on {server.endpoint}", flush=True)
    server.install_signal_handlers()
    status = server.serve_forever()
    if status != 0 and server.backend_error is not None:
        raise Step1X3DError(f"the backend could not start: {server.backend_error.message}", "startup_failed")
    return status


def _check_weights(args: argparse.Namespace) -> None:
    """The `weights check` of what the step1x3d backend will load, before anything starts."""
    if args.weights is None or args.backend not in ("auto", "step1x3d"):
        return
    from ..weights.check import check_configured

    try:
        problems = check_configured(args.weights, args.sdxl_dir, args.sdxl_vae_dir)
    except ImportError:
        return  # no neural extra: the backend reports that itself
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        raise Step1X3DError(f"the weights in {args.weights} do not match the models ({len(problems)} problem(s) "
                            "above); fetch them again with `step1x3d weights fetch`", "startup_failed")


def _check_preparation(args: argparse.Namespace) -> None:
    """The matting model and content filter load here first: a bad one is one sentence at start."""
    prep = preparation_options(args)
    if not prep:
        return
    from ..pipeline.base import PipelineError
    from ..pipeline.preparation import build_preparation

    try:
        build_preparation(prep, "cpu")
    except PipelineError as exc:
        raise Step1X3DError(str(exc), "startup_failed") from None

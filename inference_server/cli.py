"""``step1x3d``: serve, generate, keys.

Failures end with a non-zero exit status and one line ``error: <reason>``,
never a traceback (set ``STEP1X3D_DEBUG=1`` to get one).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from blender_addon.protocol.limits import Limits
from blender_addon.protocol.settings import TEXTURE_SIZES, JobSettings, SettingsError

from . import __version__

MESH_SUFFIXES = (".glb", ".obj", ".ply", ".stl")


class CliError(Exception):
    """A failure reported as ``error: <message>`` with exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------- progress display


class ProgressBar:
    """One self-overwriting line on a terminal; one line per stage otherwise (logs, CI)."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 28) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self._last_stage = ""
        self._last_len = 0

    def update(self, stage: str, step: int, total: int, fraction: float, eta_s: float | None) -> None:
        from blender_addon.client.tracker import format_eta

        if self.tty:
            filled = int(round(fraction * self.width))
            bar = "#" * filled + "-" * (self.width - filled)
            steps = f" {step}/{total}" if total > 1 else ""
            eta = f"  ETA {format_eta(eta_s)}" if eta_s is not None else ""
            line = f"\r[{bar}] {fraction * 100:5.1f}%  {stage}{steps}{eta}"
            pad = max(0, self._last_len - len(line))
            self.stream.write(line + " " * pad)
            self._last_len = len(line)
            self.stream.flush()
        elif stage != self._last_stage:
            self.stream.write(f"{stage} ...\n")
            self.stream.flush()
        self._last_stage = stage

    def finish(self) -> None:
        if self.tty and self._last_len:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------- argument parsing


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _lods(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("LODs are comma-separated face fractions, e.g. 1,0.5,0.25") from None


def _limit(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not value.strip().isdigit():
        raise argparse.ArgumentTypeError("use NAME=NUMBER, e.g. max_queue=4")
    return name.strip(), int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="step1x3d", description="Step1X-3D for Blender: images to textured 3D assets.")
    parser.add_argument("--version", action="version", version=f"step1x3d {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the job server (clients: the Blender add-on, `generate --server`)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback needs CURVE keys")
    serve.add_argument("--port", type=int, default=5555, help="TCP port (0: pick a free one and print it)")
    _backend_args(serve)
    serve.add_argument("--results-dir", type=Path, default=None, help="where finished results are kept")
    serve.add_argument("--server-key", type=Path, default=None, help="CURVE: this server's .key_secret file")
    serve.add_argument("--allow-keys", type=Path, default=None, help="CURVE: folder of allowed client .key files")
    serve.add_argument("--queue-size", type=_positive_int, default=None, help="jobs allowed to wait (default 8)")
    serve.add_argument("--result-ttl-hours", type=float, default=24.0, help="delete unfetched results after this")
    serve.add_argument("--shutdown-grace", type=float, default=10.0, help="seconds a running job gets on SIGTERM")
    serve.add_argument("--limit", type=_limit, action="append", default=[], metavar="NAME=N",
                       help=f"override a protocol limit ({', '.join(Limits().to_wire())})")
    serve.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    gen = sub.add_parser("generate", help="turn reference images into a 3D asset file")
    gen.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="PNG/JPEG/WebP, front view first")
    gen.add_argument("-o", "--output", type=Path, required=True, help=f"output file ({', '.join(MESH_SUFFIXES)})")
    gen.add_argument("--server", default=None, help="tcp://HOST:PORT of a running server (default: run in-process)")
    defaults = JobSettings()
    gen.add_argument("--seed", type=int, default=defaults.seed)
    gen.add_argument("--steps", type=int, default=defaults.steps, help="geometry sampling steps")
    gen.add_argument("--guidance", type=float, default=defaults.guidance, help="geometry guidance scale")
    gen.add_argument("--max-faces", type=int, default=defaults.max_faces)
    gen.add_argument("--texture-size", type=int, default=defaults.texture_size, choices=TEXTURE_SIZES)
    gen.add_argument("--geometry-only", action="store_true", help="mesh only, no texture")
    gen.add_argument("--mesh", type=Path, default=None, help="texture this existing mesh (glTF frame) instead")
    gen.add_argument("--inflate-depth", type=float, default=defaults.inflate_depth,
                     help="weight-free backend: thickness relative to the silhouette")
    gen.add_argument("--lods", type=_lods, default=(), help="LOD face fractions, e.g. 1,0.5,0.25")
    gen.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    gen.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for a silent server")
    gen.add_argument("--client-key", type=Path, default=None, help="CURVE: this machine's .key_secret file")
    gen.add_argument("--server-public-key", type=Path, default=None, help="CURVE: the server's public .key file")
    _backend_args(gen)

    keys = sub.add_parser("keys", help="create a CURVE key pair for using a server over the network")
    keys.add_argument("--dir", type=Path, default=Path.home() / ".config" / "step1x3d" / "keys")
    keys.add_argument("--name", default=None, help="key name (default: this computer's host name)")
    return parser


def _backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="auto",
                        help="auto (step1x3d with --weights, else inflate), inflate, step1x3d, or module:Class")
    parser.add_argument("--weights", type=Path, default=None, help="folder with the official Step1X-3D weights")
    neural = parser.add_argument_group("step1x3d backend options")
    neural.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    neural.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default=None, help="geometry model precision")
    neural.add_argument("--compile", action="store_true", help="torch.compile the flow transformer")
    neural.add_argument("--offload", choices=("auto", "none", "stages"), default=None,
                        help="move idle sub-models to the CPU (auto: on cards under 40 GB)")
    neural.add_argument("--sdxl-dir", type=Path, default=None,
                        help="texture stage: local SDXL base 1.0 folder (diffusers layout)")
    neural.add_argument("--sdxl-vae-dir", type=Path, default=None, help="texture stage: local fp16-fix SDXL VAE folder")
    neural.add_argument("--lora-dir", type=Path, default=None, help="texture stage: folder of style LoRA .safetensors")
    neural.add_argument("--texture-sync", type=float, default=None, metavar="RATIO",
                        help="texture stage: synchronise the first RATIO (0-1) of the denoising steps through a "
                             "latent UV texture (upstream: 0.5; default 0, off)")


def backend_options(args: argparse.Namespace) -> dict[str, object]:
    """The neural backend's options given on the command line (unset ones keep its defaults)."""
    chosen = {
        "device": args.device,
        "dtype": args.dtype,
        "compile": args.compile or None,
        "offload": args.offload,
        "sdxl_dir": args.sdxl_dir,
        "sdxl_vae_dir": args.sdxl_vae_dir,
        "lora_dir": args.lora_dir,
        "texture_sync_ratio": args.texture_sync,
    }
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in chosen.items() if v is not None}


def settings_from_args(args: argparse.Namespace) -> JobSettings:
    mode = "texture" if args.mesh is not None else "geometry" if args.geometry_only else "full"
    if args.mesh is not None and args.geometry_only:
        raise CliError("--mesh (texture an existing mesh) and --geometry-only exclude each other", 2)
    try:
        return JobSettings().replace(
            mode=mode,
            seed=args.seed,
            steps=args.steps,
            guidance=args.guidance,
            max_faces=args.max_faces,
            texture_size=args.texture_size,
            inflate_depth=args.inflate_depth,
            lods=list(args.lods),
        )
    except SettingsError as exc:
        raise CliError(f"{exc}", 2) from None


# --------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    from .server.config import ServerConfig, default_results_dir
    from .server.server import JobServer, StartupError

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    overrides = dict(args.limit)
    if args.queue_size is not None:
        overrides["max_queue"] = args.queue_size
    try:
        limits = Limits().with_overrides(overrides)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
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
        backend_options=backend_options(args),
    )
    try:
        server = JobServer(config)
        server.start()
    except (ValueError, StartupError) as exc:
        raise CliError(str(exc), 2) from None
    # One machine-readable line on stdout (tests and scripts read the port from it).
    print(f"step1x3d server {__version__} listening on {server.endpoint}", flush=True)
    server.install_signal_handlers()
    status = server.serve_forever()
    if status != 0 and server.backend_error is not None:
        raise CliError(f"the backend could not start: {server.backend_error.message}", status)
    return status


# --------------------------------------------------------------------- generate


def _read_images(paths: Sequence[Path]) -> list[bytes]:
    out = []
    for path in paths:
        try:
            out.append(path.read_bytes())
        except OSError as exc:
            raise CliError(f"cannot read image {path}: {exc.strerror or exc}") from None
    return out


def load_mesh(path: Path) -> dict[str, Any]:
    """A mesh file as protocol arrays (glTF frame and UV convention: v grows downwards)."""
    import numpy as np
    import trimesh

    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many types for bad files
        raise CliError(f"cannot read mesh {path}: {exc}") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise CliError(f"{path} holds no triangle mesh")
    out: dict[str, Any] = {
        "positions": np.asarray(mesh.vertices, dtype=np.float32),
        "faces": np.asarray(mesh.faces, dtype=np.uint32),
    }
    uv = getattr(mesh.visual, "uv", None)
    if uv is not None and len(uv) == len(mesh.vertices):
        uvs = np.asarray(uv, dtype=np.float32).copy()
        uvs[:, 1] = 1.0 - uvs[:, 1]  # trimesh uses OpenGL's v-up; the protocol uses glTF's v-down
        out["uvs"] = uvs
    return out


def _save_asset(asset: Any, output: Path) -> list[Path]:
    try:
        from .export import save_asset
    except ImportError:
        raise CliError("this installation cannot write mesh files yet (inference_server.export is missing)") from None
    return list(save_asset(asset, output))


def _generate_remote(args: argparse.Namespace, settings: JobSettings, bar: ProgressBar) -> list[Path]:
    from blender_addon.client import CurveKeys, JobTracker, run_job

    from .server.result_codec import result_to_asset

    curve = None
    if (args.client_key is None) != (args.server_public_key is None):
        raise CliError("CURVE needs both --client-key FILE.key_secret and --server-public-key FILE.key", 2)
    if args.client_key is not None:
        curve = CurveKeys.load(args.client_key, args.server_public_key)

    def on_progress(tracker: JobTracker) -> None:
        if tracker.state == "running":
            bar.update(tracker.stage, tracker.step, tracker.total, tracker.fraction, tracker.eta_s)
        elif tracker.state == "queued":
            bar.update(tracker.status_line, 0, 0, 0.0, None)

    mesh = load_mesh(args.mesh) if args.mesh is not None else None
    want_glb = args.output.suffix.lower() == ".glb"
    result = run_job(
        args.server,
        _read_images(args.images),
        settings,
        on_progress=on_progress,
        timeout_s=args.timeout,
        mesh=mesh,
        want_glb=want_glb,
        image_names=[p.name for p in args.images],
        curve=curve,
        connect_timeout_s=args.connect_timeout,
    )
    bar.finish()
    if want_glb and result.glb is not None:
        from .export.files import write_atomic

        write_atomic(args.output, result.glb)
        return [args.output]
    return _save_asset(result_to_asset(result), args.output)


def _generate_local(args: argparse.Namespace, settings: JobSettings, bar: ProgressBar) -> list[Path]:
    from .assets import MeshData
    from .imaging.decode import decode_image
    from .pipeline.base import JobContext, JobRequest
    from .pipeline.registry import create_pipeline, resolve_backend
    from .server.progress import ProgressModel, stage_weights

    images = [decode_image(data, name=path.name) for data, path in zip(_read_images(args.images), args.images)]
    mesh = None
    if args.mesh is not None:
        arrays = load_mesh(args.mesh)
        mesh = MeshData(positions=arrays["positions"], faces=arrays["faces"], uvs=arrays.get("uvs"))
    options = backend_options(args) if resolve_backend(args.backend, args.weights) == "step1x3d" else {}
    pipeline = create_pipeline(args.backend, args.weights, **options)
    model = ProgressModel(stage_weights(dict(pipeline.capabilities())), time.monotonic())

    def report(stage: str, step: int, total: int, _message: str) -> None:
        fraction, eta = model.update(stage, step, total, time.monotonic())
        bar.update(stage, step, total, fraction, eta)

    request = JobRequest(images=images, settings=settings, mesh=mesh, image_names=[p.name for p in args.images])
    asset = pipeline.run(request, JobContext(callback=report))
    bar.finish()
    return _save_asset(asset, args.output)


def cmd_generate(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    suffix = args.output.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise CliError(f"output must end in {', '.join(MESH_SUFFIXES)}, not {suffix or 'nothing'}", 2)
    if not args.output.parent.exists():
        raise CliError(f"the output folder {args.output.parent} does not exist", 2)
    if args.server and (args.backend != "auto" or args.weights is not None):
        print("note: --backend/--weights are ignored with --server; the server's backend runs the job", file=sys.stderr)
    bar = ProgressBar()
    started = time.monotonic()
    written = _generate_remote(args, settings, bar) if args.server else _generate_local(args, settings, bar)
    names = ", ".join(str(p) for p in written)
    print(f"wrote {names} in {time.monotonic() - started:.1f} s")
    return 0


# --------------------------------------------------------------------- keys


def cmd_keys(args: argparse.Namespace) -> int:
    from .server.security import create_keypair

    name = args.name or re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "client"
    public, secret = create_keypair(args.dir.expanduser(), name)
    print(f"public key: {public}  (give this file to the other side)")
    print(f"secret key: {secret}  (keep it here, mode 600)")
    print("server: step1x3d serve --host 0.0.0.0 --server-key SERVER.key_secret --allow-keys DIR_OF_CLIENT_KEYS")
    print("client: step1x3d generate ... --server tcp://HOST:5555 --client-key CLIENT.key_secret --server-public-key SERVER.key")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "generate": cmd_generate,
    "keys": cmd_keys,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("\ncancelled", file=sys.stderr)
        return 130
    except CliError as exc:
        _error(str(exc))
        return exc.code
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, not a traceback
        if os.environ.get("STEP1X3D_DEBUG"):
            raise
        _error(_one_line(exc))
        return 1


def _one_line(exc: Exception) -> str:
    from blender_addon.client.curve import CurveKeyError
    from blender_addon.client.session import JobFailed

    from .pipeline.base import PipelineError

    if isinstance(exc, (JobFailed, PipelineError, CurveKeyError, SettingsError, ValueError)):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    return f"unexpected {type(exc).__name__}: {exc} (set STEP1X3D_DEBUG=1 for the traceback)"


def _error(message: str) -> None:
    text = " ".join(message.split())  # exactly one line
    print(f"error: {text}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

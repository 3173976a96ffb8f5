"""``step1x3d generate``: reference images in, a 3D asset file out (in-process or through a server)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from blender_addon.protocol.settings import TEXTURE_SIZES, VIEW_NAMES, JobSettings, SettingsError

from blender_addon.protocol.errors import Step1X3DError

from ..export.formats import SUFFIXES
from .args import add_backend_args, add_matting_arg, backend_options, lods, preparation_options
from .errors import usage_error
from .progress import ProgressBar

# Measured by benchmarks/quickstart.py (cold minus warm run of the quick start, 2-core CPU).
COMPILE_ESTIMATE = "about 20 s on a quiet 2-core CPU"


VIEW_HELP = (
    "Views (glTF frame, Y up, metres): the FRONT camera sits on +Z looking at the object's front; "
    "RIGHT sits on +X (to your right as you face the front: a character facing you shows its left side), "
    "BACK on -Z, LEFT on -X. Give the front and any of the others, positionally in that order or by name "
    "(see docs/views.md for a picture)."
)


def register(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser(
        "generate",
        help="turn reference images into a 3D asset file",
        description="Turn reference images into a textured 3D asset. " + VIEW_HELP,
    )
    gen.add_argument("images", nargs="*", type=Path, metavar="IMAGE",
                     help="PNG/JPEG/WebP in the order front, right, back, left (or use --front/--right/--back/--left)")
    views = gen.add_argument_group("named views (instead of, not as well as, positional images)")
    for name in VIEW_NAMES:
        views.add_argument(f"--{name}", type=Path, default=None, metavar="IMG", help=f"the {name} view")
    gen.add_argument("-o", "--output", type=Path, required=True,
                     help=f"output file; its suffix picks the format ({', '.join(SUFFIXES)}); "
                          "missing folders are created")
    gen.add_argument("--server", default=None, help="tcp://HOST:PORT of a running server (default: run in-process)")
    defaults = JobSettings()
    gen.add_argument("--seed", type=int, default=defaults.seed, help="random seed (same seed, same result)")
    gen.add_argument("--steps", type=int, default=defaults.steps, help="geometry sampling steps (step1x3d backend)")
    gen.add_argument("--guidance", type=float, default=defaults.guidance,
                     help="geometry guidance scale (step1x3d backend)")
    gen.add_argument("--max-faces", type=int, default=defaults.max_faces, help="face budget of the result")
    gen.add_argument("--texture-size", type=int, default=defaults.texture_size, choices=TEXTURE_SIZES,
                     help="edge of the square texture maps in pixels")
    gen.add_argument("--geometry-only", action="store_true", help="mesh only, no texture")
    gen.add_argument("--mesh", type=Path, default=None, help="texture this existing mesh (glTF frame) instead")
    gen.add_argument("--option", dest="options", action="append", type=option_arg, default=[], metavar="NAME=VALUE",
                     help="a backend option (repeatable), e.g. --option lora=ink --option octree_resolution=256; "
                          "values are read as true/false, numbers or names; the active backend's options are "
                          "listed in its welcome (docs/protocol.md) (default: none, the backend's defaults)")
    gen.add_argument("--inflate-depth", type=float, default=None,
                     help="weight-free backend: thickness relative to the silhouette, 0.05-2 "
                          "(same as --option inflate_depth=X; default: the backend's, 1 = round)")
    gen.add_argument("--size", type=float, default=None, metavar="METRES",
                     help="largest dimension of the result in metres (e.g. 0.1 for a mug); default: about 1.9")
    gen.add_argument("--mirror-front-detail", action="store_true",
                     help="weight-free, no back view: paint the front's features (eyes, labels) on the back too "
                          "(same as --option mirror_front_detail=true; default: off)")
    gen.add_argument("--lods", type=lods, default=(), help="LOD face fractions, e.g. 1,0.5,0.25 (default: none)")
    gen.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    gen.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for a silent server")
    gen.add_argument("--client-key", type=Path, default=None, help="CURVE: this machine's .key_secret file")
    gen.add_argument("--server-public-key", type=Path, default=None, help="CURVE: the server's public .key file")
    add_backend_args(gen)
    add_matting_arg(gen)
    gen.set_defaults(handler=run)


def view_names(args: argparse.Namespace) -> tuple[str, ...]:
    """The view of each image sent (named form); () for the positional form (slots in order)."""
    return tuple(name for name in VIEW_NAMES if getattr(args, name) is not None)


def image_paths(args: argparse.Namespace) -> list[Path]:
    """The reference images in view order (front, right, back, left), from either form."""
    named = {name: getattr(args, name) for name in VIEW_NAMES if getattr(args, name) is not None}
    if named and args.images:
        raise usage_error("give the images either positionally or with --front/--right/--back/--left, not both")
    if not named:
        if not args.images:
            raise usage_error("give at least the front view: step1x3d generate FRONT.png -o OUT.glb")
        if len(args.images) > len(VIEW_NAMES):
            raise usage_error(f"at most {len(VIEW_NAMES)} images (front, right, back, left), got {len(args.images)}")
        return list(args.images)
    if "front" not in named:
        raise usage_error("--front is required when views are named (the other views are optional)")
    return [named[name] for name in VIEW_NAMES if name in named]


def option_arg(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` -> (name, value): true/false, an integer, a number, or else the text itself."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    value: Any = raw
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        for kind in (int, float):
            try:
                value = kind(raw)
                break
            except ValueError:
                continue
    return name.strip(), value


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The backend options: the older flags (shorthands kept working) and then every --option."""
    options: dict[str, Any] = {}
    if args.inflate_depth is not None:
        options["inflate_depth"] = args.inflate_depth
    if args.mirror_front_detail:
        options["mirror_front_detail"] = True
    options.update(dict(args.options))
    return options


def settings_from_args(args: argparse.Namespace) -> JobSettings:
    mode = "texture" if args.mesh is not None else "geometry" if args.geometry_only else "full"
    if args.mesh is not None and args.geometry_only:
        raise usage_error("--mesh (texture an existing mesh) and --geometry-only exclude each other")
    try:
        return JobSettings().replace(
            mode=mode,
            seed=args.seed,
            steps=args.steps,
            guidance=args.guidance,
            max_faces=args.max_faces,
            texture_size=args.texture_size,
            lods=list(args.lods),
            views=list(view_names(args)),
            size=args.size,
            options=options_from_args(args),
        )
    except SettingsError as exc:
        raise usage_error(f"{exc}") from None


def _read_images(paths: Sequence[Path]) -> list[bytes]:
    out = []
    for path in paths:
        try:
            out.append(path.read_bytes())
        except OSError as exc:
            raise Step1X3DError(f"cannot read image {path}: {exc.strerror or exc}", "bad_file") from None
    return out


def load_mesh(path: Path) -> dict[str, Any]:
    """A mesh file as protocol arrays (glTF frame and UV convention: v grows downwards)."""
    import numpy as np
    import trimesh

    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many types for bad files
        raise Step1X3DError(f"cannot read mesh {path}: {exc}", "bad_file") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise Step1X3DError(f"{path} holds no triangle mesh", "bad_file")
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
    from ..export import save_asset

    return list(save_asset(asset, output))


def _generate_remote(args: argparse.Namespace, settings: JobSettings, bar: ProgressBar) -> list[Path]:
    from blender_addon.client import CurveKeys, JobTracker, run_job

    from ..result_asset import result_to_asset

    curve = None
    if (args.client_key is None) != (args.server_public_key is None):
        raise usage_error("CURVE needs both --client-key FILE.key_secret and --server-public-key FILE.key")
    if args.client_key is not None:
        curve = CurveKeys.load(args.client_key, args.server_public_key)

    def on_progress(tracker: JobTracker) -> None:
        if tracker.state == "running":
            bar.update(tracker.stage, tracker.step, tracker.total, tracker.fraction, tracker.eta_s)
        elif tracker.state == "queued":
            bar.update(tracker.status_line, 0, 0, 0.0, None)

    mesh = load_mesh(args.mesh) if args.mesh is not None else None
    paths = image_paths(args)
    want_glb = args.output.suffix.lower() == ".glb"
    result = run_job(
        args.server,
        _read_images(paths),
        settings,
        on_progress=on_progress,
        timeout_s=args.timeout,
        mesh=mesh,
        want_glb=want_glb,
        image_names=[p.name for p in paths],
        curve=curve,
        connect_timeout_s=args.connect_timeout,
    )
    bar.finish()
    if want_glb and result.glb is not None:
        from ..export.files import write_atomic

        write_atomic(args.output, result.glb)
        return [args.output]
    return _save_asset(result_to_asset(result), args.output)


def _generate_local(args: argparse.Namespace, settings: JobSettings, bar: ProgressBar) -> list[Path]:
    from blender_addon.core.naming import new_job_id

    from ..assets import MeshData
    from ..pipeline.base import JobContext
    from ..pipeline.options import check_job_options, declared_options
    from ..pipeline.registry import create_pipeline, resolve_backend
    from ..server.intake import QueuedRequest
    from ..server.job_runner import run_to_asset
    from ..server.progress import ProgressModel, stage_weights

    from inference_server.kernels.jit import NUMBA_CACHE_DIR, on_compile

    paths = image_paths(args)
    encoded = _read_images(paths)
    mesh = None
    if args.mesh is not None:
        arrays = load_mesh(args.mesh)
        mesh = MeshData(positions=arrays["positions"], faces=arrays["faces"], uvs=arrays.get("uvs"))
    options = backend_options(args) if resolve_backend(args.backend, args.weights) == "step1x3d" else {}
    options.update(preparation_options(args))  # learned cut-out, whatever the backend
    pipeline = create_pipeline(args.backend, args.weights, **options)
    capabilities = dict(pipeline.capabilities())
    # The server's submit check, in-process: the options checked and their defaults filled in, so the
    # job (and its provenance) is the one a server would run.
    settings = check_job_options(settings, declared_options(capabilities) or (), pipeline.name)
    model = ProgressModel(stage_weights(capabilities, settings.mode), time.monotonic())

    def report(stage: str, step: int, total: int, _message: str) -> None:
        fraction, eta = model.update(stage, step, total, time.monotonic())
        bar.update(stage, step, total, fraction, eta)

    compiled: list[str] = []

    def compiling(name: str) -> None:
        if not compiled:
            bar.note(f"note: compiling the CPU kernels once (first run only, {COMPILE_ESTIMATE}); "
                     f"later runs load them from {NUMBA_CACHE_DIR}")
        compiled.append(name)

    # The worker's own job (decode, run, finalize): local and remote results differ only in per-run keys.
    queued = QueuedRequest(images=list(encoded), settings=settings, mesh=mesh, image_names=[p.name for p in paths])
    with on_compile(compiling):
        asset = run_to_asset(pipeline.run, pipeline.name, queued, new_job_id(), JobContext(callback=report))
    bar.finish()
    return _save_asset(asset, args.output)


def run(args: argparse.Namespace) -> int:
    image_paths(args)  # a usage error is reported before anything runs
    settings = settings_from_args(args)
    suffix = args.output.suffix.lower()
    if suffix not in SUFFIXES:
        raise usage_error(f"output must end in {', '.join(SUFFIXES)}, not {suffix or 'nothing'}")
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise usage_error(f"cannot create the output folder {args.output.parent}: {exc.strerror or exc}") from None
    if args.server and (args.backend != "auto" or args.weights is not None):
        print("note: --backend/--weights are ignored with --server; the server's backend runs the job", file=sys.stderr)
    bar = ProgressBar()
    started = time.monotonic()
    written = _generate_remote(args, settings, bar) if args.server else _generate_local(args, settings, bar)
    names = ", ".join(str(p) for p in written)
    print(f"wrote {names} in {time.monotonic() - started:.1f} s")
    return 0

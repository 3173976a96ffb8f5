"""``step1x3d weights fetch|check``: get the official weights into the one layout, and check them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blender_addon.protocol.errors import Step1X3DError

from .errors import usage_error


def register(sub: argparse._SubParsersAction) -> None:
    from ..weights.catalog import DEFAULT_MODELS, MODELS

    weights = sub.add_parser("weights", help="fetch the model weights from a hub, or check a weights folder")
    actions = weights.add_subparsers(dest="weights_command", required=True)
    fetch = actions.add_parser("fetch", help="download exactly the files the step1x3d backend reads")
    fetch.add_argument("--dir", type=Path, required=True, help="weights folder (then: serve --weights DIR)")
    fetch.add_argument("--models", default=",".join(DEFAULT_MODELS),
                       help=f"comma-separated: {', '.join(MODELS)}, or all (default: %(default)s)")
    fetch.add_argument("--endpoint", default=None, help="hub or mirror URL (default: HF_ENDPOINT, else the Hugging Face hub)")
    fetch.add_argument("--revision", default=None, help="revision (branch, tag, commit) of stepfun-ai/Step1X-3D")
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    fetch.set_defaults(handler=run_fetch)
    check = actions.add_parser("check", help="check every tensor's name and shape from the file headers")
    check.add_argument("dir", type=Path, help="weights folder, or one geometry model folder")
    check.set_defaults(handler=run_check)


def run_fetch(args: argparse.Namespace) -> int:
    from ..weights.catalog import parse_models
    from ..weights.fetch import fetch

    try:
        models = parse_models(args.models)
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    fetch(args.dir, models, endpoint=args.endpoint, revision=args.revision, progress=not args.quiet,
          say=lambda line: print(line, flush=True))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..weights.check import check_folder

    if not args.dir.is_dir():
        raise usage_error(f"weights folder not found: {args.dir}")
    try:
        problems = check_folder(args.dir)
    except ImportError as exc:
        raise Step1X3DError(f"checking weights needs the neural extra (pip install 'step1x3d[neural]'): {exc}",
                            "not_installed") from None
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    print(f"{args.dir}: all weights match the models")
    return 0

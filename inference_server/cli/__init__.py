"""``step1x3d``: the command line. One module per subcommand, each with ``register(subparsers)``.

Failures end with a non-zero exit status and one line ``error: <reason>``,
never a traceback (set ``STEP1X3D_DEBUG=1`` to get one).

To add a subcommand: write ``cli/<name>.py`` with ``register(sub)`` that adds its parser and
``set_defaults(handler=run)``, and list the module in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from blender_addon.protocol.errors import Step1X3DError

from .. import __version__
from .args import DefaultsFormatter, backend_options
from .errors import EXIT_STATUS, exit_status, one_line, print_error
from .progress import ProgressBar

# Module names under inference_server.cli, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = ("serve", "generate", "convert", "keys", "weights", "finetune")

__all__ = ["ProgressBar", "backend_options", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="step1x3d", description="Step1X-3D for Blender: images to textured 3D assets.")
    parser.add_argument("--version", action="version", version=f"step1x3d {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for command in sub.choices.values():
        command.formatter_class = DefaultsFormatter  # every option's help states its default
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("\ncancelled", file=sys.stderr)
        return EXIT_STATUS["cancelled"]
    except Step1X3DError as exc:  # every failure we word ourselves; its code picks the exit status
        print_error(str(exc))
        return exit_status(exc.code)
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, not a traceback
        if os.environ.get("STEP1X3D_DEBUG"):
            raise
        print_error(one_line(exc))
        return 1

"""The CLI's exit statuses (one table, by error code) and its one-line wording (never a traceback).

Every failure the CLI reports is a :class:`~blender_addon.protocol.errors.Step1X3DError`; its code
picks the exit status. The CLI's own checks raise it with code ``usage`` (exit 2).
"""

from __future__ import annotations

import sys

from blender_addon.protocol.errors import Step1X3DError

# Exit status per error code; every other code exits 1 (the job or command ran and failed).
EXIT_STATUS: dict[str, int] = {
    "usage": 2,  # the command line was wrong: nothing ran
    "startup_failed": 2,  # `serve` could not start: nothing is listening
    "cancelled": 130,  # Ctrl+C, as shells report SIGINT
}


def exit_status(code: str) -> int:
    """The exit status for a failure with error code ``code``."""
    return EXIT_STATUS.get(code, 1)


def usage_error(message: str) -> Step1X3DError:
    """A wrong command line (exit status 2): ``raise usage_error("...")``."""
    return Step1X3DError(message, "usage")


def one_line(exc: Exception) -> str:
    """The sentence printed for an exception that ``main`` did not word itself (not a Step1X3DError)."""
    if isinstance(exc, (Step1X3DError, ValueError)):  # our sentence, or a library's one-line complaint
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    return f"unexpected {type(exc).__name__}: {exc} (set STEP1X3D_DEBUG=1 for the traceback)"


def print_error(message: str) -> None:
    text = " ".join(message.split())  # exactly one line
    print(f"error: {text}", file=sys.stderr)

"""The CLI's one failure type and its one-line wording (never a traceback)."""

from __future__ import annotations

import sys

from blender_addon.protocol.settings import SettingsError


class CliError(Exception):
    """A failure reported as ``error: <message>`` with exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def one_line(exc: Exception) -> str:
    """The sentence printed for an unexpected exception."""
    from blender_addon.client.curve import CurveKeyError
    from blender_addon.client.session import JobFailed

    from ..pipeline.base import PipelineError

    if isinstance(exc, (JobFailed, PipelineError, CurveKeyError, SettingsError, ValueError)):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    return f"unexpected {type(exc).__name__}: {exc} (set STEP1X3D_DEBUG=1 for the traceback)"


def print_error(message: str) -> None:
    text = " ".join(message.split())  # exactly one line
    print(f"error: {text}", file=sys.stderr)

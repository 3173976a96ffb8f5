"""The CLI's progress display: one self-overwriting line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import TextIO


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

"""The CLI's progress display: one bar for the whole job (overall fraction, ETA, stage beside it).

On a terminal it is one self-overwriting line. Without one (logs, CI) it prints one plain line
when a stage starts and one each time that stage's steps cross a tenth, never an empty line.
The fraction and ETA come from the job's progress model (overall, across stages), so the bar
never restarts at 0 % for a new stage.
"""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, width: int = 28) -> None:
        self.stream = stream if stream is not None else sys.stderr  # read at call time (tests swap it)
        self.width = width
        self.tty = self.stream.isatty()
        self._last_stage = ""
        self._last_decile = -1
        self._last_len = 0

    def update(self, stage: str, step: int, total: int, fraction: float, eta_s: float | None) -> None:
        from blender_addon.client.tracker import format_eta

        stage = stage.strip() or "working"
        fraction = min(max(fraction, 0.0), 1.0)
        steps = f" {step}/{total}" if total > 1 else ""
        eta = f", about {format_eta(eta_s)} left" if eta_s is not None else ""
        if self.tty:
            filled = int(round(fraction * self.width))
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"\r[{bar}] {fraction * 100:3.0f}%  {stage}{steps}{eta}"
            pad = max(0, self._last_len - len(line))
            self.stream.write(line + " " * pad)
            self._last_len = len(line)
            self.stream.flush()
        else:
            decile = min(10, int(10 * step / total)) if total > 1 else 0
            if stage != self._last_stage or decile > self._last_decile:
                self.stream.write(f"[{fraction * 100:3.0f}%] {stage}{steps}{eta}\n")
                self.stream.flush()
                self._last_decile = decile
        self._last_stage = stage

    def note(self, text: str) -> None:
        """A line of its own above the bar (e.g. the first run's kernel compilation)."""
        if self.tty and self._last_len:
            self.stream.write("\r" + " " * self._last_len + "\r")
            self._last_len = 0
        self.stream.write(text.rstrip() + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._last_len:
            self.stream.write("\n")
            self.stream.flush()

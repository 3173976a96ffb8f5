"""The trainer's progress line: step, loss, samples/s and ETA.

One self-overwriting line on a terminal; on a pipe (logs, CI, torchrun's prefixed output) a
plain line every ``every`` steps and at the end.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float | None) -> str:
    from blender_addon.client.tracker import format_eta

    return format_eta(seconds)


class TrainProgress:
    def __init__(self, total_steps: int, start_step: int = 0, stream: TextIO = sys.stderr, every: int = 10) -> None:
        self.total = total_steps
        self.start_step = start_step
        self.stream = stream
        self.every = max(1, every)
        self.tty = stream.isatty()
        self._t0 = time.perf_counter()
        self._last_len = 0

    def line(self, step: int, loss: float, samples_per_s: float) -> str:
        done = step - self.start_step
        elapsed = time.perf_counter() - self._t0
        eta = elapsed / done * (self.total - step) if done > 0 else None
        return (f"step {step}/{self.total}  loss {loss:.5f}  {samples_per_s:.2f} samples/s  "
                f"ETA {format_duration(eta)}")

    def update(self, step: int, loss: float, samples_per_s: float) -> None:
        text = self.line(step, loss, samples_per_s)
        if self.tty:
            pad = max(0, self._last_len - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._last_len = len(text)
        elif step % self.every == 0 or step == self.total:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.tty and self._last_len:
            self.stream.write("\n")
            self._last_len = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._last_len:
            self.stream.write("\n")
            self.stream.flush()
            self._last_len = 0

"""Overall job fraction and ETA from the per-stage progress a pipeline reports.

A pipeline may declare ``capabilities()["stages"]`` as ``{stage: weight}`` (or a
list of stage names, equal weights), and ``capabilities()["stages_by_mode"]`` as
``{mode: {stage: weight}}`` where the modes run different stages; the overall
fraction is then the weighted sum of finished stages plus the current stage's
step/total, and it never runs backwards: a stage outside the plan (a sub-stage)
holds the fraction where it is. Without a plan, the fraction is the current
stage's own step/total.

The ETA appears only once there is a rate to extrapolate: a stage of the plan has
finished, or the current stage has done a step of several. Before that (start-up,
kernel compilation, the first step of a long stage) any figure would be a guess.
"""

from __future__ import annotations

from typing import Any


def stage_weights(capabilities: dict[str, Any], mode: str | None = None) -> dict[str, float]:
    by_mode = capabilities.get("stages_by_mode")
    stages = by_mode.get(mode) if isinstance(by_mode, dict) and mode in by_mode else capabilities.get("stages")
    if isinstance(stages, dict):
        weights = {str(k): float(v) for k, v in stages.items() if isinstance(v, (int, float)) and v > 0}
    elif isinstance(stages, (list, tuple)):
        weights = {str(k): 1.0 for k in stages}
    else:
        return {}
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()} if total > 0 else {}


class ProgressModel:
    """Turns (stage, step, total) reports into a monotone overall fraction and an ETA."""

    def __init__(self, weights: dict[str, float], started: float) -> None:
        self._weights = weights
        self._order = list(weights)
        self._started = started
        self._fraction = 0.0
        self._stage = ""
        self._eta: float | None = None
        self._has_rate = False

    def update(self, stage: str, step: int, total: int, now: float) -> tuple[float, float | None]:
        within = min(max(step / total, 0.0), 1.0) if total > 0 else 0.0
        if stage in self._weights:
            index = self._order.index(stage)
            done_before = sum(self._weights[s] for s in self._order[:index])
            fraction = done_before + self._weights[stage] * within
            fraction = max(fraction, self._fraction)  # never run backwards
            self._has_rate |= done_before > 0 or (total > 1 and 0 < step) or within >= 1.0
        elif self._weights:
            fraction = self._fraction  # a sub-stage of the current planned stage: hold
        else:
            # Unknown stage plan: the stage's own fraction; it restarts at each new stage.
            fraction = within if stage != self._stage or within >= self._fraction else self._fraction
            if stage != self._stage:
                self._eta = None
                self._has_rate = False
            self._has_rate |= total > 1 and 0 < step
        self._stage = stage
        self._fraction = fraction
        elapsed = now - self._started
        if self._has_rate and fraction >= 0.01 and elapsed >= 0.2:
            raw = elapsed * (1.0 - fraction) / fraction
            # Smooth: early steps (warm-up, compilation) make raw ETAs jumpy.
            self._eta = raw if self._eta is None else 0.7 * self._eta + 0.3 * raw
            self._eta = min(self._eta, raw * 2.0)
        return fraction, (round(self._eta, 1) if self._eta is not None else None)

    @property
    def fraction(self) -> float:
        return self._fraction

    @property
    def eta_s(self) -> float | None:
        return self._eta

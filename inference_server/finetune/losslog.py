"""``loss.csv`` (one row per optimizer step) and ``loss.png`` (the curve and its running mean).

``val_loss`` is the loss on held-out objects, filled on the steps where it was measured (each
checkpoint of a run with a held-out split) and empty elsewhere; the plot draws it as a second
series. On resume the rows after the checkpoint's step are dropped first, so the file always describes
exactly the steps that led to the current weights. The plot is drawn with Pillow (no plotting
library in the dependencies).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from PIL import Image, ImageDraw

from ..export.files import write_atomic

COLUMNS = ("step", "loss", "lr", "samples_per_s", "elapsed_s", "val_loss")
MISSING = math.nan  # a row without a measured val_loss (written as an empty cell)


VAL_COLOUR = (235, 120, 20)


class LossLog:
    def __init__(self, path: Path, resume_step: int = 0) -> None:
        self.path = path
        self.rows: list[dict[str, float]] = []
        if resume_step > 0 and path.is_file():
            with open(path, newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    if int(row["step"]) <= resume_step:
                        self.rows.append({k: _parse(row.get(k)) for k in COLUMNS})
        self._rewrite()

    def _rewrite(self) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.rows:
            writer.writerow([_fmt(k, row[k]) for k in COLUMNS])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, buf.getvalue())

    def append(self, step: int, loss: float, lr: float, samples_per_s: float, elapsed_s: float,
               val_loss: float | None = None) -> None:
        row = {"step": float(step), "loss": loss, "lr": lr, "samples_per_s": samples_per_s, "elapsed_s": elapsed_s,
               "val_loss": MISSING if val_loss is None else val_loss}
        self.rows.append(row)
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh, lineterminator="\n").writerow([_fmt(k, row[k]) for k in COLUMNS])

    def losses(self) -> list[float]:
        return [r["loss"] for r in self.rows]

    def points(self) -> list[tuple[int, float]]:
        return [(int(r["step"]), r["loss"]) for r in self.rows]

    def val_points(self) -> list[tuple[int, float]]:
        return [(int(r["step"]), r["val_loss"]) for r in self.rows if not math.isnan(r["val_loss"])]

    def plot(self, path: Path) -> Path:
        return plot_losses(self.points(), path, self.val_points())


def _fmt(key: str, value: float) -> str:
    if math.isnan(value):
        return ""
    return str(int(value)) if key == "step" else f"{value:.6g}"


def _parse(text: str | None) -> float:
    return float(text) if text not in (None, "") else MISSING  # files from before val_loss existed lack it


def read_losses(path: Path) -> list[tuple[int, float]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(fh)]


def read_val_losses(path: Path) -> list[tuple[int, float]]:
    """The (step, held-out loss) rows where it was measured."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [(int(r["step"]), float(r["val_loss"])) for r in csv.DictReader(fh) if r.get("val_loss")]


def running_mean(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_losses(points: list[tuple[int, float]], path: Path, val_points: list[tuple[int, float]] | None = None,
                size: tuple[int, int] = (800, 400)) -> Path:
    """Loss (grey) and its running mean (blue) against the step, with min/max labels; the held-out
    loss (orange, a dot per measurement) when ``val_points`` has any."""
    val_points = val_points or []
    w, h = size
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 70, w - 20, 20, h - 40
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    if points:
        steps = [p[0] for p in points]
        losses = [p[1] for p in points]
        lo, hi = min(losses + [v for _, v in val_points]), max(losses + [v for _, v in val_points])
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        s0, s1 = steps[0], max(steps[-1], steps[0] + 1)

        def xy(step: float, loss: float) -> tuple[float, float]:
            return (left + (step - s0) / (s1 - s0) * (right - left), bottom - (loss - lo) / (hi - lo) * (bottom - top))

        if len(points) > 1:
            draw.line([xy(s, v) for s, v in points], fill=(170, 170, 170), width=1)
            smooth = running_mean(losses, max(1, len(losses) // 20))
            draw.line([xy(s, v) for s, v in zip(steps, smooth)], fill=(30, 90, 200), width=2)
        else:
            x, y = xy(steps[0], losses[0])
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(30, 90, 200))
        if len(val_points) > 1:
            draw.line([xy(s, v) for s, v in val_points], fill=VAL_COLOUR, width=2)
        for s, v in val_points:
            x, y = xy(s, v)
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=VAL_COLOUR)
        draw.text((4, top), f"{hi:.4g}", fill=(0, 0, 0))
        draw.text((4, bottom - 10), f"{lo:.4g}", fill=(0, 0, 0))
        draw.text((left, bottom + 8), f"step {s0}", fill=(0, 0, 0))
        draw.text((right - 80, bottom + 8), f"step {steps[-1]}", fill=(0, 0, 0))
    title = "training loss (grey) and running mean (blue)"
    draw.text((left + 8, top + 4), title + (", held-out loss (orange)" if val_points else ""), fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())
    return path

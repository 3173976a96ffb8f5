"""Texture style LoRA training: samples/s of the real trainer on the tiny SDXL-shaped models (CPU).

    python benchmarks/finetune_texture.py                  # tiny rows, with and without gradient checkpointing
    python benchmarks/finetune_texture.py --markdown FILE  # also write the table as markdown

A sample is one asset: six 64^2 views (8^2 latents), the reference pass and the geometry
adapter. samples/s is the median of the per-step rates in the run's ``loss.csv`` (warm-up steps
skipped). No full-size row yet: neither a fake-tensor estimate nor a GPU measurement of the
2.6 B-parameter UNet with its adapter branches has been made (docs/finetune.md).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402


def tiny_rate(steps: int, batch: int, checkpointing: bool) -> float:
    from inference_server.finetune.texture.prepare import TexturePrepareOptions, prepare_textures
    from inference_server.finetune.texture.trainer import load_texture_config, train_texture
    from tests.finetune.texture_helpers import RESOLUTION, tiny_weights, write_assets

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        w = tiny_weights(root / "weights")
        prepare_textures(write_assets(root / "assets"), root / "prep", w["vae_dir"],
                         TexturePrepareOptions(resolution=RESOLUTION), log=lambda _l: None)
        cfg = load_texture_config(None, base=str(w["adapter_file"]), sdxl_dir=str(w["sdxl_dir"]),
                                  vae_dir=str(w["vae_dir"]), data=str(root / "prep"), out=str(root / "run"), rank=8,
                                  steps=steps, batch=batch, lr=1e-3, checkpoint_every=steps,
                                  gradient_checkpointing=checkpointing, device="cpu")
        train_texture(cfg, stream=io.StringIO())
        with open(root / "run" / "loss.csv", newline="") as fh:
            rates = [float(r["samples_per_s"]) for r in csv.DictReader(fh)][2:]
    return statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="tiny-model steps per row")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the tiny kernels are microseconds long: more threads only contend
    lines = ["| model / device | batch | gradient checkpointing | samples/s |", "|---|---|---|---|"]
    for ckpt in (False, True):
        rate = tiny_rate(args.steps, 2, ckpt)
        lines.append(f"| tiny SDXL-shaped / cpu (fp32, LoRA r8, 6 views of 64^2) | 2 | {'yes' if ckpt else 'no'} | "
                     f"{rate:.1f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())

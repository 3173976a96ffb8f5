"""Geometry LoRA training: samples/s and memory.

    python benchmarks/finetune.py                  # tiny models on the CPU, the full-size memory estimate, and
                                                   # full-size steps on the GPU when this machine has CUDA
    python benchmarks/finetune.py --gpu            # the same, but fail (one sentence) when there is no CUDA GPU
    python benchmarks/finetune.py --check-gpu-row  # run the GPU row's code on the CPU with a 2-block transformer
                                                   # (proves the row runs; its numbers are not figures)
    python benchmarks/finetune.py --markdown FILE  # also write the tables as markdown

Rows:
* ``tiny / cpu``: the real trainer (``train_geometry``) on the tiny official-layout model and four
  prepared objects; samples/s is the median of the per-step rates in its ``loss.csv``.
* ``full / fake tensors``: ESTIMATE, no GPU: the full-size base transformer (1.3B) built on the
  meta device in bf16 and run on fake tensors (``memory_estimate.LiveTensorMemory``) through one
  training step exactly as the trainer runs it (PEFT LoRA rank 64 in fp32, bf16 autocast, batch 1,
  2048 latents + 1370 condition tokens, loss, backward, AdamW step), with and without gradient
  checkpointing. Peak = resident tensors (frozen bf16 weights, LoRA weights, gradients, Adam
  states) + the largest live total of everything the step creates. Not included: CUDA context,
  allocator fragmentation, kernel workspaces (memory_estimate's budget rule adds 20 % + 1 GiB).
* ``full / cuda``: MEASURED whenever CUDA is available: the same step with random weights (speed
  does not depend on their values), median of 5 steps after one warm-up, batch 1, with and without
  gradient checkpointing; peak is ``torch.cuda.max_memory_allocated`` (what the 24 GB question asks;
  the CUDA context and allocator cache come on top). Without CUDA the row says so; nothing is filled in.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "neural" / "geometry"))

import torch  # noqa: E402

GiB = 1024**3
RANK = 64
CONDITION_TOKENS = 1370  # DINOv2-L at 518: 1 CLS + 37 x 37 patches


def tiny_rate(steps: int, batch: int, checkpointing: bool) -> float:
    """Median samples/s of the real trainer on the tiny model (CPU)."""
    from geometry_tiny_models import write_tiny_model

    from inference_server.finetune.geometry.prepare import PrepareOptions, prepare
    from inference_server.finetune.geometry.trainer import load_geometry_config, train_geometry
    from tests.finetune.conftest import TINY_PREP, write_meshes

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = write_tiny_model(root / "Step1X-3D-Geometry-1300m", label=False)
        prepare(write_meshes(root / "meshes"), root / "prep", model, PrepareOptions(**TINY_PREP), log=lambda _l: None)
        cfg = load_geometry_config(None, base=str(model), data=str(root / "prep"), out=str(root / "run"), rank=4,
                                   steps=steps, batch=batch, lr=1e-3, checkpoint_every=steps,
                                   gradient_checkpointing=checkpointing, device="cpu")
        train_geometry(cfg, stream=io.StringIO())
        import csv

        with open(root / "run" / "loss.csv", newline="") as fh:
            rates = [float(r["samples_per_s"]) for r in csv.DictReader(fh)][2:]  # skip warm-up steps
    return statistics.median(rates)


# A 2-block transformer of the full model's interface (latent and condition sizes), for --check-gpu-row.
CHECK_ARCH: dict[str, Any] = {"input_channels": 64, "width": 64, "layers": 1, "num_single_layers": 1, "num_heads": 2,
                              "use_visual_condition": True, "visual_condition_dim": 1024}


def _full_transformer(fake_mode: Any | None, device: str, checkpointing: bool,
                      arch: dict[str, Any] | None = None) -> tuple[torch.nn.Module, Any]:
    """The full-size base transformer (or ``arch``) in bf16 with the trainer's LoRA and AdamW: real on
    ``device``, or built on the meta device and materialised as fake tensors (nothing allocated)."""
    from benchmarks.full_size import GEOMETRY_TRANSFORMERS
    from inference_server.finetune.geometry.trainer import (
        GeometryTrainConfig,
        add_lora,
        enable_gradient_checkpointing,
    )
    from inference_server.neural.geometry.configs import TransformerConfig
    from inference_server.neural.geometry.models.transformer import Step1X3DTransformer

    cfg = GeometryTrainConfig(rank=RANK, mixed_precision="bf16", gradient_checkpointing=checkpointing)
    with torch.device("meta" if fake_mode is not None else device):
        module = Step1X3DTransformer(TransformerConfig(**(arch or GEOMETRY_TRANSFORMERS["base"]))).to(torch.bfloat16)
    module.requires_grad_(False)
    add_lora(module, cfg)  # LoRA weights in fp32, as the trainer keeps them
    if fake_mode is not None:
        with fake_mode:
            module.to_empty(device="cpu")
    if checkpointing:
        enable_gradient_checkpointing(module)
    params = [p for p in module.parameters() if p.requires_grad]
    with fake_mode if fake_mode is not None else contextlib.nullcontext():
        optimizer = torch.optim.AdamW(params, lr=1e-4, betas=cfg.betas, eps=cfg.eps)
    return module, optimizer


def _step(transformer: torch.nn.Module, optimizer: Any, device: str, batch: int = 1) -> None:
    """One trainer step on random data (bf16 autocast, the preconditioned flow loss, AdamW)."""
    from inference_server.finetune.geometry.objective import flow_loss, noisy_latents

    z = torch.randn(batch, 2048, 64, device=device)
    eps = torch.randn_like(z)
    visual = torch.randn(batch, CONDITION_TOKENS, 1024, device=device)
    sigma = torch.full((batch,), 0.5, device=device)
    x_t = noisy_latents(z, eps, sigma)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        v = transformer(x_t, torch.full((batch,), 500.0, device=device), visual=visual)
    flow_loss(v, z, eps, x_t, sigma).mean().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def storage_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``, each rounded up to the allocator's 512-byte blocks."""
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        st = tensor.untyped_storage()
        if st._cdata not in seen:
            seen.add(st._cdata)
            total += -(-int(st.nbytes()) // 512) * 512
    return total


def full_estimate(checkpointing: bool) -> tuple[float, float, float]:
    """(weights GiB, step GiB, estimated peak GiB) from fake tensors. The step's count includes the
    gradients and the Adam states it creates (they stay resident from then on)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from benchmarks.memory_estimate import LiveTensorMemory

    fake = FakeTensorMode(allow_non_fake_inputs=True)
    transformer, optimizer = _full_transformer(fake, "cpu", checkpointing)
    weights = storage_bytes([*transformer.parameters(), *transformer.buffers()])
    memory = LiveTensorMemory(512)
    with fake, memory:
        _step(transformer, optimizer, "cpu")
    return weights / GiB, memory.peak / GiB, (weights + memory.peak) / GiB


def full_measured(device: str, checkpointing: bool, steps: int = 5,
                  arch: dict[str, Any] | None = None) -> tuple[float, float | None]:
    """(samples/s, peak GiB or None off CUDA) of trainer steps with random weights, batch 1."""
    cuda = device == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    transformer, optimizer = _full_transformer(None, device, checkpointing, arch)
    times = []
    for i in range(steps + 1):
        sync()
        t0 = time.perf_counter()
        _step(transformer, optimizer, device)
        sync()
        if i:  # the first step warms up kernels and allocates the Adam states
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / GiB if cuda else None
    del transformer, optimizer
    if cuda:
        torch.cuda.empty_cache()
    return 1.0 / statistics.median(times), peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="tiny-model steps per row")
    parser.add_argument("--gpu", action="store_true", help="require the full-size CUDA row (fail without a GPU)")
    parser.add_argument("--check-gpu-row", action="store_true",
                        help="run the GPU row's code on the CPU with a 2-block transformer (not a figure)")
    parser.add_argument("--no-estimate", action="store_true", help="skip the fake-tensor estimate (about 1 min)")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    if args.gpu and not torch.cuda.is_available():
        print("error: --gpu asks for the full-size CUDA row, but torch sees no CUDA GPU on this machine",
              file=sys.stderr)
        return 1
    if args.check_gpu_row:
        for ckpt in (True, False):
            rate, _ = full_measured("cpu", ckpt, steps=2, arch=CHECK_ARCH)
            print(f"| check: 2-block transformer / cpu (bf16 autocast, LoRA r{RANK}) | 1 | {'yes' if ckpt else 'no'} | "
                  f"{rate:.2f} (not a figure) | - |", flush=True)
        return 0

    lines = ["| model / device | batch | gradient checkpointing | samples/s | peak memory |", "|---|---|---|---|---|"]
    for ckpt in (False, True):
        rate = tiny_rate(args.steps, 4, ckpt)
        lines.append(f"| tiny / cpu (fp32) | 4 | {'yes' if ckpt else 'no'} | {rate:.1f} | - |")
        print(lines[-1], flush=True)
    if not args.no_estimate:
        for ckpt in (True, False):
            weights, act, peak = full_estimate(ckpt)
            budget = peak + 0.2 * act + 1.0
            lines.append(f"| full 1.3B / fake tensors (bf16, LoRA r{RANK}) | 1 | {'yes' if ckpt else 'no'} | "
                         f"(estimate) | {peak:.1f} GiB = {weights:.1f} weights + {act:.1f} step; budget "
                         f"{budget:.1f} GiB |")
            print(lines[-1], flush=True)
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for ckpt in (True, False):
            rate, peak = full_measured("cuda", ckpt)
            lines.append(f"| full 1.3B / {name} (bf16, LoRA r{RANK}) | 1 | {'yes' if ckpt else 'no'} | {rate:.2f} | "
                         f"{peak or 0:.1f} GiB (measured) |")
            print(lines[-1], flush=True)
    else:
        lines.append("| full 1.3B / cuda | 1 | - | (no GPU in this run) | - |")
    text = "\n".join(lines)
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())

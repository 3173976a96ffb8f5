"""Argument types and option groups shared by several subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help unless its text already states the default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        empty = action.default is None or action.default is False or action.default in ((), [], argparse.SUPPRESS)
        if "default" in text or empty or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def lods(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("LODs are comma-separated face fractions, e.g. 1,0.5,0.25") from None


def limit(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not value.strip().isdigit():
        raise argparse.ArgumentTypeError("use NAME=NUMBER, e.g. max_queue=4")
    return name.strip(), int(value)


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="auto",
                        help="auto (step1x3d with --weights, else inflate), inflate, step1x3d, or module:Class")
    parser.add_argument("--weights", type=Path, default=None, help="folder with the official Step1X-3D weights (default: none, the weight-free backend)")
    neural = parser.add_argument_group("step1x3d backend options")
    neural.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    neural.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default=None, help="geometry model precision (default: bf16 on GPUs that have it, fp16 on others, fp32 on the CPU)")
    neural.add_argument("--compile", action="store_true", help="torch.compile the flow transformer")
    neural.add_argument("--offload", choices=("auto", "none", "stages"), default=None,
                        help="move idle sub-models to the CPU (default: auto, which offloads on cards under 40 GB)")
    neural.add_argument("--sdxl-dir", type=Path, default=None,
                        help="texture stage: local SDXL base 1.0 folder (diffusers layout)")
    neural.add_argument("--sdxl-vae-dir", type=Path, default=None, help="texture stage: local fp16-fix SDXL VAE folder")
    neural.add_argument("--lora-dir", type=Path, default=None,
                        help="texture stage: folder of style LoRA .safetensors; their names (read at start) are the "
                             "choices of the jobs' 'lora' option (the panel's Style drop-down)")
    neural.add_argument("--geometry-lora-dir", type=Path, default=None,
                        help="geometry stage: folder of geometry LoRA .safetensors (step1x3d finetune geometry); their "
                             "names (read at start) are the choices of the jobs' 'geometry_lora' option")
    neural.add_argument("--texture-sync", type=float, default=None, metavar="RATIO",
                        help="texture stage: synchronise the first RATIO (0-1) of the denoising steps through a "
                             "latent UV texture (upstream: 0.5; default 0, off)")


def backend_options(args: argparse.Namespace) -> dict[str, object]:
    """The neural backend's options given on the command line (unset ones keep its defaults)."""
    chosen = {
        "device": args.device,
        "dtype": args.dtype,
        "compile": args.compile or None,
        "offload": args.offload,
        "sdxl_dir": args.sdxl_dir,
        "sdxl_vae_dir": args.sdxl_vae_dir,
        "lora_dir": args.lora_dir,
        "geometry_lora_dir": args.geometry_lora_dir,
        "texture_sync_ratio": args.texture_sync,
    }
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in chosen.items() if v is not None}


def add_matting_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matting-model", type=Path, default=None, metavar="MODEL.onnx",
                        help="learned background removal for images without transparency (U2-Net, IS-Net, BiRefNet "
                             "as ONNX, run with onnxruntime); colour keying stays the fallback")


def add_content_filter_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("content filter (off unless configured)")
    group.add_argument("--content-filter", type=Path, default=None, metavar="MODEL.onnx",
                       help="an ONNX image classifier run on every job's images before the backend")
    group.add_argument("--content-filter-labels", type=Path, default=None, metavar="FILE",
                       help="its classes in output order, one per line: 'allow NAME' or 'refuse NAME'")
    group.add_argument("--content-filter-threshold", type=float, default=None, metavar="P",
                       help="refuse when a refused class reaches this probability (default 0.5)")


def preparation_options(args: argparse.Namespace) -> dict[str, object]:
    """The job preparation options (see inference_server.pipeline.preparation) given on the command line."""
    chosen = {key: getattr(args, key, None) for key in
              ("matting_model", "content_filter", "content_filter_labels", "content_filter_threshold")}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in chosen.items() if v is not None}

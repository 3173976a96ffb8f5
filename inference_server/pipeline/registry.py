"""Backend names -> pipeline objects. Imports are lazy: the neural backend pulls torch."""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import Pipeline, PipelineError

BACKENDS = ("auto", "inflate", "step1x3d")


def resolve_backend(backend: str, weights: Path | None) -> str:
    """``auto`` is the neural backend when weights are configured, else the weight-free one."""
    if backend == "auto":
        return "step1x3d" if weights is not None else "inflate"
    return backend


def create_pipeline(backend: str = "auto", weights: Path | str | None = None, **options: object) -> Pipeline:
    """Build a backend by name, or from ``package.module:Class`` (plugins and test pipelines),
    behind the job preparation the options configure (content filter, learned cut-out)."""
    from .preparation import split_options, with_preparation

    prep, own = split_options(options)
    return with_preparation(_create(backend, weights, **own), prep)


def _create(backend: str, weights: Path | str | None, **options: object) -> Pipeline:
    weights_path = Path(weights).expanduser() if weights else None
    name = resolve_backend(backend, weights_path)
    if name == "inflate":
        from .inflate import InflatePipeline

        return InflatePipeline(**options)  # type: ignore[arg-type]
    if name == "step1x3d":
        if weights_path is None:
            raise PipelineError(
                "the step1x3d backend needs --weights DIR (a local copy of the official Step1X-3D weights)",
                code="weights_missing",
            )
        try:
            from ..neural.backend import Step1X3DBackend
        except ImportError as exc:  # torch/diffusers not installed
            raise PipelineError(
                f"the step1x3d backend needs the 'neural' extra (pip install 'step1x3d-blender[neural]'): {exc}",
                code="not_installed",
            ) from exc
        return Step1X3DBackend(weights_path, **options)  # type: ignore[arg-type]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise PipelineError(f"cannot load backend {name!r}: {exc}", code="bad_backend") from exc
        return cls(**options)  # type: ignore[no-any-return]
    raise PipelineError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}", code="bad_backend")

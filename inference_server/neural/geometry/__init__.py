"""Step1X-3D geometry stage (``neural`` extra): image -> mesh with the official weights.

Models (``models/``) carry upstream's parameter names; ``loader`` reads a local folder strictly;
``sampling`` is the rectified-flow Euler/CFG loop; ``surface`` turns the VAE into a field for
the shared extractor; ``pipeline`` ties them together behind upstream's Python API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pipeline import Step1X3DGeometryPipeline, Step1X3DGeometryPipelineOutput

_EXPORTS = {
    "Step1X3DGeometryPipeline": ".pipeline",
    "Step1X3DGeometryPipelineOutput": ".pipeline",
    "load_components": ".loader",
    "resolve_model_dir": ".loader",
}


def __getattr__(name: str) -> Any:
    # Lazy, so importing the package does not pull torch until a class is used.
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(name)


__all__ = ["Step1X3DGeometryPipeline", "Step1X3DGeometryPipelineOutput", "load_components", "resolve_model_dir"]

"""Pipelines of the texture stage: the multi-view SDXL denoiser and the upstream-compatible API.

``Step1X3DTexturePipeline`` wraps :class:`~inference_server.neural.texture.stage.TextureStage`,
which itself uses :class:`MultiViewSDXL`, so it is resolved lazily to keep imports acyclic.
"""

from __future__ import annotations

from typing import Any

from .multiview_sdxl import MultiViewSDXL, PromptEmbeds


def __getattr__(name: str) -> Any:
    if name == "Step1X3DTexturePipeline":
        from .texture_pipeline import Step1X3DTexturePipeline

        return Step1X3DTexturePipeline
    raise AttributeError(name)


__all__ = ["MultiViewSDXL", "PromptEmbeds", "Step1X3DTexturePipeline"]

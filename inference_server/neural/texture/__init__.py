"""Step1X-3D texture stage (``neural`` extra): SDXL + MV-Adapter + geometry adapter, baked into PBR maps.

Entry points: :class:`TextureStage` (the server's), :class:`Step1X3DTexturePipeline` (upstream's API).
Imported lazily so that ``import inference_server.neural.texture`` costs nothing without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import TextureConfig
    from .pipelines.texture_pipeline import Step1X3DTexturePipeline
    from .stage import TextureStage

_EXPORTS = {
    "TextureConfig": ".config",
    "TextureStage": ".stage",
    "Step1X3DTexturePipeline": ".pipelines.texture_pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(name)


__all__ = ["Step1X3DTexturePipeline", "TextureConfig", "TextureStage"]

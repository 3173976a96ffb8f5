"""Model pieces of the texture stage: MV-Adapter attention processors and the geometry adapter."""

from .attention_processor import NUM_VIEWS, MVRowColAttnProcessor, install_mv_processors, multiview_attention
from .geometry_adapter import GEOMETRY_CHANNELS, build_geometry_adapter, geometry_adapter_channels

__all__ = [
    "GEOMETRY_CHANNELS",
    "MVRowColAttnProcessor",
    "NUM_VIEWS",
    "build_geometry_adapter",
    "geometry_adapter_channels",
    "install_mv_processors",
    "multiview_attention",
]

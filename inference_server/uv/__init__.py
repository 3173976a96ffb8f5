"""Stage 5: UV atlas (chunked xatlas charts, packed by ``pack.py``) and atlas quality metrics (rasterized with
``kernels.rasterize_uv``)."""

from .atlas import (
    UnwrapResult,
    default_padding,
    unwrap,
    unwrap_with_info,
    unwrap_with_mapping,
)

__all__ = ["UnwrapResult", "default_padding", "unwrap", "unwrap_with_info", "unwrap_with_mapping"]

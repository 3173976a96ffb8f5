"""Stage 5: UV atlas (fast chunked xatlas), a small UV rasterizer and atlas quality metrics."""

from .atlas import UnwrapResult, default_padding, unwrap, unwrap_with_info, unwrap_with_mapping

__all__ = ["UnwrapResult", "default_padding", "unwrap", "unwrap_with_info", "unwrap_with_mapping"]

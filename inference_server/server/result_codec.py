"""Kept only for ``job_runner.py``'s import (another engineer's file): the conversion lives in
``inference_server/result_asset.py`` and the wire layout in ``blender_addon/protocol/result.py``."""

from ..result_asset import asset_to_result

__all__ = ["asset_to_result"]

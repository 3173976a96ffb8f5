"""The 6-channel geometry control: a T2I-Adapter ("full_adapter_xl") on position + normal maps.

Its four feature maps are added to the UNet's down path at every step (diffusers'
``down_intrablock_additional_residuals``). The official file stores it under ``adapter.*``,
which is the state-dict prefix of diffusers' :class:`~diffusers.T2IAdapter`.
"""

from __future__ import annotations

from typing import Any

from diffusers import T2IAdapter

GEOMETRY_CHANNELS = 6  # position xyz + normal xyz
DOWNSCALE_FACTOR = 16  # pixel-unshuffle factor; with XL's one extra downsampling the features land on latent/2 and latent/4


def geometry_adapter_channels(unet_config: Any) -> tuple[int, int, int, int]:
    """Feature widths matching an SDXL-shaped UNet: one per down block, the last one twice.

    SDXL's (320, 640, 1280) gives upstream's (320, 640, 1280, 1280). Deriving them from the
    UNet config lets the tests use a tiny UNet with the same structure.
    """
    blocks = tuple(int(c) for c in unet_config.block_out_channels)
    if len(blocks) != 3:
        raise ValueError(f"the geometry adapter needs an SDXL-shaped UNet with 3 down blocks, got {len(blocks)}")
    return blocks[0], blocks[1], blocks[2], blocks[2]


def build_geometry_adapter(unet_config: Any) -> T2IAdapter:
    return T2IAdapter(
        in_channels=GEOMETRY_CHANNELS,
        channels=geometry_adapter_channels(unet_config),
        num_res_blocks=2,
        downscale_factor=DOWNSCALE_FACTOR,
        adapter_type="full_adapter_xl",
    )


__all__ = ["GEOMETRY_CHANNELS", "build_geometry_adapter", "geometry_adapter_channels"]

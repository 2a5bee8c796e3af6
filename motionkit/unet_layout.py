"""What decides whether a motion adapter fits a UNet: channels per block, layers per down block, mid layers.

Shared by the adapter (which describes its own layout) and injection (which checks the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from motionkit.errors import MotionkitError


@dataclass(frozen=True)
class Layout:
    """What decides whether an adapter fits a UNet: channels per block, layers per down block, mid layers."""

    block_out_channels: tuple[int, ...]
    layers_per_block: tuple[int, ...]
    mid_block_layers: int

    def __str__(self) -> str:
        layers = ",".join(map(str, self.layers_per_block))
        mid = f"mid x{self.mid_block_layers}" if self.mid_block_layers else "no mid"
        return f"blocks {list(self.block_out_channels)} with [{layers}] layers per down block, {mid}"


def unet_layout(unet: nn.Module) -> Layout:
    down = getattr(unet, "down_blocks", None)
    if down is None or not hasattr(unet, "up_blocks"):
        raise MotionkitError(f"{type(unet).__name__} is not a diffusers UNet2DConditionModel: load the base UNet first")
    mid = getattr(unet, "mid_block", None)
    return Layout(
        block_out_channels=tuple(block.resnets[-1].out_channels for block in down),
        layers_per_block=tuple(len(block.resnets) for block in down),
        mid_block_layers=len(getattr(mid, "attentions", ())) if mid is not None else 0,
    )

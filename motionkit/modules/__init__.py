"""Temporal layers that make an image UNet move: attention over frames and 1-D convolutions over frames."""

from motionkit.modules.attention import TemporalAttention
from motionkit.modules.motion_module import MotionModule
from motionkit.modules.position import sinusoidal_table
from motionkit.modules.temporal_conv import TemporalConvBlock
from motionkit.modules.temporal_transformer import TemporalTransformer, TemporalTransformerBlock

__all__ = [
    "MotionModule",
    "TemporalAttention",
    "TemporalConvBlock",
    "TemporalTransformer",
    "TemporalTransformerBlock",
    "sinusoidal_table",
]

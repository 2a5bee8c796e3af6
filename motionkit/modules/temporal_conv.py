"""SVD-style temporal convolution: 1-D convolutions over frames at every spatial position.

norm -> SiLU -> conv(k x 1 x 1) -> norm -> SiLU -> conv(k x 1 x 1) (zero-initialised), added to the
input, then blended with the input through a learned gate ``sigmoid(merge_factor)``. A fresh block is
the identity because the last convolution starts at zero.
"""

import torch
from torch import nn

from motionkit.modules.norm import frame_group_norm


class TemporalConvBlock(nn.Module):
    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        norm_num_groups: int = 32,
        temporal_norm: str = "per_frame",
        dropout: float = 0.0,
    ):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"temporal_conv_kernel_size must be odd and positive, got {kernel_size}: use 3 or 5")
        self.temporal_norm = temporal_norm
        padding = (kernel_size // 2, 0, 0)
        self.norm1 = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.conv1 = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=padding)
        self.norm2 = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=padding)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        # SVD's AlphaBlender init: the spatial path keeps weight sigmoid(0.5) ~ 0.62.
        self.merge_factor = nn.Parameter(torch.tensor(0.5))

    def _conv_over_frames(self, conv: nn.Conv3d, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        videos = x.view(bf // num_frames, num_frames, c, h, w).transpose(1, 2)  # [B, C, F, H, W]
        return conv(videos).transpose(1, 2).reshape(bf, c, h, w)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``x``: ``[B*F, C, H, W]``; returns the same shape."""
        act = nn.functional.silu
        h = act(frame_group_norm(x, self.norm1, num_frames, self.temporal_norm))
        h = self._conv_over_frames(self.conv1, h, num_frames)
        h = self.dropout(act(frame_group_norm(h, self.norm2, num_frames, self.temporal_norm)))
        h = self._conv_over_frames(self.conv2, h, num_frames)
        spatial_weight = torch.sigmoid(self.merge_factor)
        # alpha * x + (1 - alpha) * (x + h), written so the gate scales only the temporal update.
        return x + (1 - spatial_weight) * h

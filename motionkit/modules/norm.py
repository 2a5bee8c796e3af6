"""GroupNorm over frames-in-batch activations, per frame or across all frames of a video.

Original SD1.5 AnimateDiff modules normalise each frame on its own; diffusers and the SDXL-beta
original pool the statistics over every frame of the video. The choice is a config field.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

TemporalNorm = Literal["per_frame", "across_frames"]
TEMPORAL_NORMS = ("per_frame", "across_frames")


def frame_group_norm_5d(x: torch.Tensor, norm: nn.GroupNorm, num_frames: int, mode: str) -> torch.Tensor:
    """Normalise ``x`` of shape ``[B*F, C, H, W]``; returns a ``[B, F, C, H, W]`` view-compatible tensor.

    The result may be non-contiguous (across frames it is a transpose of GroupNorm's output), so
    callers can fold their own layout change into a single copy.
    """
    bf, c, h, w = x.shape
    if mode == "per_frame":
        return norm(x).view(bf // num_frames, num_frames, c, h, w)
    videos = x.view(bf // num_frames, num_frames, c, h, w).transpose(1, 2)  # [B, C, F, H, W] view
    return F.group_norm(videos, norm.num_groups, norm.weight, norm.bias, norm.eps).transpose(1, 2)


def frame_group_norm(x: torch.Tensor, norm: nn.GroupNorm, num_frames: int, mode: str) -> torch.Tensor:
    """Normalise ``x`` of shape ``[B*F, C, H, W]``; returns the same shape."""
    return frame_group_norm_5d(x, norm, num_frames, mode).reshape(x.shape)

"""Sliding context windows: denoise videos longer than an adapter's frame-position table.

At every denoising step the model runs on windows of at most ``length`` frames and the
predictions are fused per frame with weights that fall towards each window's edges ("pyramid"),
so neighbouring windows blend instead of seaming. Windows overlap by ``overlap`` frames;
``loop`` wraps them around the end so the last frames also blend into the first (a seamless loop);
``stride > 1`` adds dilated windows (every 2nd, 4th, ... frame) that tie distant frames together,
as AnimateDiff's "uniform" context schedule does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from motionkit.errors import MotionkitError

# "delayed_reverse_sawtooth" (FreeNoise's): the first half nearly off, then falling from the middle.
WEIGHTINGS = ("pyramid", "flat", "delayed_reverse_sawtooth")


@dataclass(frozen=True)
class ContextWindows:
    """How to split ``num_frames`` into windows; ``windows(num_frames)`` gives the frame indices."""

    length: int
    overlap: int = 4
    stride: int = 1
    loop: bool = False
    weighting: str = "pyramid"

    def __post_init__(self) -> None:
        if self.length < 1:
            raise MotionkitError(f"context_length must be at least 1, got {self.length}")
        if not 0 <= self.overlap < self.length:
            raise MotionkitError(
                f"context_overlap {self.overlap} must be at least 0 and below context_length {self.length}"
            )
        if self.stride < 1:
            raise MotionkitError(f"context_stride must be at least 1, got {self.stride}")
        if self.weighting not in WEIGHTINGS:
            raise MotionkitError(f"context weighting {self.weighting!r} is not one of {', '.join(WEIGHTINGS)}")

    def windows(self, num_frames: int) -> list[list[int]]:
        """Frame indices of every window; together they cover each frame at least once."""
        if num_frames <= self.length:
            return [list(range(num_frames))]
        windows: list[list[int]] = []
        dilation = 1
        # Dilations 1, 2, 4, ... up to `stride` levels, while the dilated sequence is still longer than one window.
        for _ in range(self.stride):
            for offset in range(dilation):
                frames = list(range(offset, num_frames, dilation))
                for window in self._slide(len(frames)):
                    windows.append([frames[i] for i in window])
            dilation *= 2
            if -(-num_frames // dilation) <= 1:
                break
        return windows

    def _slide(self, n: int) -> list[list[int]]:
        if n <= self.length:
            return [list(range(n))]
        step = self.length - self.overlap
        if self.loop:
            return [[(start + i) % n for i in range(self.length)] for start in range(0, n, step)]
        starts = list(range(0, n - self.length, step)) + [n - self.length]  # the last window ends on the last frame
        return [list(range(start, start + self.length)) for start in starts]

    def weights(self, size: int) -> torch.Tensor:
        """Per-frame fusion weights of a window of ``size`` frames (strictly positive)."""
        if self.weighting == "flat" or size <= 2:
            return torch.ones(size)
        position = torch.arange(size, dtype=torch.float32)
        if self.weighting == "delayed_reverse_sawtooth":
            middle = (size + 1) // 2
            falling = torch.clamp(size - position, max=float(middle))  # ..., middle, middle - 1, ..., 1
            return torch.where(position < middle - 1, torch.full_like(position, 0.01), falling)
        return torch.minimum(position + 1, size - position)


def check_frames_fit(num_frames: int, table_length: int, context: ContextWindows | None) -> None:
    """Refuse, with the fix, a run whose windows would exceed the adapter's position table."""
    window = context.length if context is not None else num_frames
    if min(window, num_frames) > table_length:
        raise MotionkitError(
            f"{'context windows of ' if context else ''}{min(window, num_frames)} frames exceed the adapter's "
            f"position table of {table_length}: set context_length to at most {table_length}"
        )


def fuse_windows(
    predict: Callable[[list[int]], torch.Tensor],
    num_frames: int,
    context: ContextWindows,
    frame_dim: int = 2,
) -> torch.Tensor:
    """Run ``predict(frame_indices)`` on every window and blend the results into one full-length tensor.

    ``predict`` returns a tensor whose ``frame_dim`` axis has one entry per requested frame.
    """
    windows = context.windows(num_frames)
    if len(windows) == 1 and windows[0] == list(range(num_frames)):
        return predict(windows[0])  # one window holding every frame: nothing to blend
    total: torch.Tensor | None = None
    weight_sum: torch.Tensor | None = None
    for frames in windows:
        out = predict(frames)
        if total is None:
            shape = list(out.shape)
            shape[frame_dim] = num_frames
            total = out.new_zeros(shape, dtype=torch.float32)
            weight_sum = torch.zeros(num_frames, dtype=torch.float32, device=out.device)
        weight = context.weights(len(frames)).to(out.device)
        view = [1] * out.ndim
        view[frame_dim] = len(frames)
        index = torch.tensor(frames, device=out.device)
        total.index_add_(frame_dim, index, out.float() * weight.view(view))
        weight_sum.index_add_(0, index, weight)
    view = [1] * total.ndim
    view[frame_dim] = num_frames
    return (total / weight_sum.view(view)).to(out.dtype)

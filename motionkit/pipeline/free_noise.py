"""FreeNoise (Qiu et al. 2023) for long videos: rescheduled noise and windowed temporal attention.

Two parts, each as diffusers' ``AnimateDiffPipeline.enable_free_noise`` does them, so equal weights give
equal videos:

- **noise rescheduling** (``noise_type``): ``"shuffle_context"`` draws noise for every frame, then from frame
  ``context_length`` on fills each block of ``context_stride`` frames with a shuffled copy of the block
  ``context_length`` frames earlier, so distant frames share noise (less drift); ``"repeat_context"`` draws
  ``context_length`` frames and tiles them; ``"random"`` keeps independent noise.
- **windowed motion modules**: the UNet runs on every frame at once, but each temporal transformer block
  attends over windows of ``context_length`` frames, ``context_stride`` apart (the last one ends on the last
  frame), and blends the windows' outputs per frame with ``weighting_scheme`` weights before its
  feed-forward. Each window sees frame positions ``0..context_length-1``, so videos of any length stay inside
  the adapter's position table.

Where motionkit differs from diffusers 0.42 (the tests check equality everywhere else):

- ``"repeat_context"``: diffusers means to tile one window of noise but draws noise for every frame (it
  compares ``context_length`` with the string ``"repeat_context"``) and tiles that, so its repeat noise is
  its random noise; motionkit draws ``context_length`` frames and tiles them, as documented there.
- when ``num_frames - context_length`` is not a multiple of ``context_stride``, the last window overlaps the
  one before it by an uneven amount; diffusers then adds that window's outputs with their per-frame weights but
  counts them with one weight for all its new frames (``weights[:, -n]``), so those frames are not a weighted
  mean. motionkit divides by the weights it added (a true weighted mean).
- videos no longer than one window run without windows, where diffusers refuses them; ``context_loop`` (with
  whole-UNet windows off) wraps the motion-module windows around the end, which diffusers cannot do.

Whole-UNet context windows (``context_length`` of ``__call__``, ``motionkit.pipeline.context``) still work on
top: each UNet window's motion modules are windowed again when it is longer than FreeNoise's window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers.utils.torch_utils import randn_tensor

from motionkit.errors import MotionkitError
from motionkit.pipeline.context import ContextWindows, fuse_windows

NOISE_TYPES = ("shuffle_context", "repeat_context", "random")
WEIGHTING_SCHEMES = ("flat", "pyramid", "delayed_reverse_sawtooth")


@dataclass(frozen=True)
class MotionWindows:
    """What a temporal transformer block calls to attend over windows: ``self(run, num_frames)`` runs
    ``run(frame_indices)`` (tokens ``[N, Fw, C]`` out) per window and blends them along frames."""

    windows: ContextWindows

    @property
    def length(self) -> int:
        return self.windows.length

    def __call__(self, run: Callable[[list[int]], torch.Tensor], num_frames: int) -> torch.Tensor:
        return fuse_windows(run, num_frames, self.windows, frame_dim=1)


@dataclass(frozen=True)
class FreeNoise:
    """``enable_free_noise``'s settings (diffusers' names and defaults)."""

    context_length: int = 16
    context_stride: int = 4
    weighting_scheme: str = "pyramid"
    noise_type: str = "shuffle_context"

    def __post_init__(self) -> None:
        if self.context_length < 1:
            raise MotionkitError(f"FreeNoise context_length must be at least 1, got {self.context_length}")
        if not 1 <= self.context_stride <= self.context_length:
            raise MotionkitError(
                f"FreeNoise context_stride {self.context_stride} must lie in 1..context_length ({self.context_length}): "
                "windows further apart would leave frames out"
            )
        if self.weighting_scheme not in WEIGHTING_SCHEMES:
            raise MotionkitError(f"FreeNoise weighting_scheme {self.weighting_scheme!r} is not one of {', '.join(WEIGHTING_SCHEMES)}")
        if self.noise_type not in NOISE_TYPES:
            raise MotionkitError(f"FreeNoise noise_type {self.noise_type!r} is not one of {', '.join(NOISE_TYPES)}")

    def motion_windows(self, loop: bool = False) -> MotionWindows:
        overlap = self.context_length - self.context_stride
        return MotionWindows(ContextWindows(self.context_length, overlap, 1, loop, self.weighting_scheme))

    def noise(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | list[torch.Generator] | None,
        device: torch.device,
        dtype: torch.dtype,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Initial noise ``[B, C, F, h, w]`` (before ``init_noise_sigma``), drawn and rescheduled as diffusers'
        ``_prepare_latents_free_noise`` does (the same generator calls in the same order). ``latents`` of ``F``
        frames are returned as given; of ``context_length`` frames, they are the noise to reschedule."""
        num_frames, length, stride = shape[2], self.context_length, self.context_stride
        if latents is not None:
            if latents.shape[2] == num_frames:
                return latents.to(device, dtype)
            if latents.shape[2] != length:
                raise MotionkitError(
                    f"latents have {latents.shape[2]} frames: FreeNoise takes {num_frames} (the video) or {length} (one window)"
                )
            noise = latents.to(device, dtype)
        else:
            drawn = (*shape[:2], length if self.noise_type == "repeat_context" else num_frames, *shape[3:])
            noise = randn_tensor(drawn, generator=generator, device=device, dtype=dtype)
            if self.noise_type == "random":
                return noise
        if self.noise_type == "shuffle_context":
            noise = noise.clone()
            shuffler = generator[0] if isinstance(generator, list) else generator
            for start in range(length, num_frames, stride):
                source = list(range(max(0, start - length), min(num_frames, max(0, start - length) + stride)))
                order = torch.tensor(source)[torch.randperm(len(source), generator=shuffler)]
                end = min(num_frames, start + len(source))
                noise[:, :, start:end] = noise[:, :, order[: end - start]]
        elif self.noise_type == "repeat_context":
            noise = torch.cat([noise] * -(-num_frames // length), dim=2)
        return noise[:, :, :num_frames]


def set_motion_windows(adapter: torch.nn.Module, windows: MotionWindows | None) -> None:
    """Window (or, with ``None``, stop windowing) every temporal transformer of ``adapter``."""
    from motionkit.modules.temporal_transformer import TemporalTransformer

    for module in adapter.modules():
        if isinstance(module, TemporalTransformer):
            module.frame_windows = windows

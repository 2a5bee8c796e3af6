"""The starting noise of a video: frame-correlated noise, and what each frame's noise mean becomes.

Frame-correlated noise is the mixed noise prior of PYoCo (Ge et al. 2023) for video diffusion.

Independent noise per frame lets every frame of a weak video model settle on another scene in the first
steps. With a correlation ``rho`` every pair of frames' noise correlates by ``rho`` while each frame's noise
stays a standard normal, so an image model sees in-distribution noise frame by frame. The correlated noise
is built from the independent draw itself (its mean over frames and the residual, rescaled), so it takes no
further random numbers and ``rho = 0`` returns the draw unchanged: seeds give the same videos as before.

Each frame's spatial noise mean sets that frame's brightness and hue (``with_frame_means``): shared between
frames, text-to-video keeps one; taken out, image-to-video keeps the image's.

A model trained on plain noise all but keeps its input's mean, so whatever mean the noise has sets the
picture's colour, not the caption. Training with offset noise (``with_noise_offset``, the ``noise_offset`` of
diffusers' training scripts) adds one random value per channel to the whole training noise, which teaches the
model to move the mean itself.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from motionkit.errors import MotionkitError


def check_noise_correlation(correlation: float, name: str = "noise_correlation") -> float:
    """``correlation`` as a float in [0, 1), or one line saying what is wrong."""
    value = float(correlation)
    if not 0.0 <= value < 1.0:
        raise MotionkitError(f"{name} must lie in [0, 1) (0: independent frames, as trained by default), got {correlation}")
    return value


def check_noise_offset(offset: float, name: str = "noise_offset") -> float:
    """``offset`` as a float in [0, 1), or one line saying what is wrong."""
    value = float(offset)
    if not 0.0 <= value < 1.0:
        raise MotionkitError(f"{name} must lie in [0, 1) (0: plain noise; 0.05 to 0.1 is usual), got {offset}")
    return value


def with_noise_offset(noise: torch.Tensor, offset: float, generator: torch.Generator, channel_dim: int = 1) -> torch.Tensor:
    """``noise`` plus ``offset`` times one standard normal per leading index up to ``channel_dim`` (per sample
    and channel of a batch; per channel of one clip with ``channel_dim=0``), the same at every frame and pixel.
    ``offset == 0`` returns ``noise`` itself and draws nothing, so the generator's stream is as before."""
    if offset == 0:
        return noise
    shape = tuple(noise.shape[: channel_dim + 1]) + (1,) * (noise.ndim - channel_dim - 1)
    return noise + offset * torch.randn(shape, generator=generator).to(noise)


def for_text_to_video(correlation: float, *, conditioned: bool) -> float:
    """A models folder's (or a page's) noise correlation as a job samples it: text-to-video's alone. An image
    or a source video already ties the frames together, and frames 1..N-1 sharing noise that an anchored
    frame 0 lacks jump away from it together; those jobs sample independent noise."""
    return 0.0 if conditioned else correlation


def text_to_video_noise(correlation: float, frame_means: str | None, *, conditioned: bool) -> dict[str, Any]:
    """The pipeline's starting-noise arguments for a job, from a models folder's (or a page's) text-to-video
    values: both apply to text-to-video alone (``for_text_to_video``; from an image the pipeline takes the
    frame means out itself, from a video it keeps them)."""
    return {
        "noise_correlation": for_text_to_video(correlation, conditioned=conditioned),
        "frame_noise_means": None if conditioned else frame_means,
    }


def correlate_frames(noise: torch.Tensor, correlation: float, frame_dim: int = 2) -> torch.Tensor:
    """``noise`` (independent standard normal) with every pair of frames along ``frame_dim`` correlated by
    ``correlation`` and each element still of unit variance.

    With ``m`` the mean over frames (variance 1/F) and ``r = noise - m`` (variance (F-1)/F, independent of
    ``m``), ``a * m + b * r`` has variance ``(a^2 + (F-1) b^2) / F`` and cross-frame covariance
    ``(a^2 - b^2) / F``; ``b^2 = 1 - rho`` and ``a^2 = 1 + (F-1) rho`` give 1 and ``rho``.
    """
    rho = check_noise_correlation(correlation)
    frames = noise.shape[frame_dim]
    if rho == 0.0 or frames < 2:
        return noise
    mean = noise.mean(dim=frame_dim, keepdim=True)
    residual = noise - mean
    return math.sqrt(1.0 + (frames - 1) * rho) * mean + math.sqrt(1.0 - rho) * residual



# What each frame's spatial noise mean becomes: as drawn (diffusers), frame 0's for every frame, or zero.
FRAME_NOISE_MEANS = ("drawn", "shared", "zero")


def check_frame_noise_means(mode: str, name: str = "frame_noise_means") -> str:
    """``mode`` if it is one of ``FRAME_NOISE_MEANS``, or one line saying what is wrong."""
    if mode not in FRAME_NOISE_MEANS:
        raise MotionkitError(f"{name} {mode!r} is not one of {', '.join(FRAME_NOISE_MEANS)}")
    return mode


def default_frame_noise_means(mode: str | None, *, conditioned: bool) -> str:
    """The mode a job samples with: the one given, else ``"zero"`` from an image (its latent sets every
    frame's colour) and ``"drawn"`` otherwise (diffusers' noise, so equal weights give equal videos)."""
    if mode is not None:
        return check_frame_noise_means(mode)
    return "zero" if conditioned else "drawn"


def with_frame_means(noise: torch.Tensor, mode: str, frame_dim: int = 2) -> torch.Tensor:
    """``noise`` ``[..., F, ..., H, W]`` (independent standard normal per frame) with each frame's per-channel
    spatial mean set by ``mode``.

    A diffusion UNet all but keeps the mean of the latent it denoises (why offset noise exists), so each
    frame's noise mean, about ``1/sqrt(H*W)`` in size, sets that frame's overall brightness and hue: with
    independent means a weak video model's frames each take their own. ``"shared"`` gives every frame
    frame 0's mean (each frame's noise keeps its distribution; the video's colour still varies by seed);
    ``"zero"`` takes the means out and rescales the rest to unit variance, for image-to-video, where every
    frame should keep the image's mean colour; ``"drawn"`` returns ``noise`` itself.
    """
    mode = check_frame_noise_means(mode)
    positions = noise.shape[-1] * noise.shape[-2]
    if mode == "drawn" or positions < 2:
        return noise
    means = noise.mean(dim=(-2, -1), keepdim=True)
    if mode == "shared":
        return noise - means + means.narrow(frame_dim, 0, 1)
    return (noise - means) * math.sqrt(positions / (positions - 1))


def noise_prior(noise: torch.Tensor, correlation: float, frame_means: str, frame_dim: int = 2) -> torch.Tensor:
    """An independent standard-normal draw shaped by the whole prior: frames correlated by ``correlation``
    (``correlate_frames``), then each frame's mean set by ``frame_means`` (``with_frame_means``). ``0`` and
    ``"drawn"`` return the draw itself."""
    return with_frame_means(correlate_frames(noise, correlation, frame_dim=frame_dim), frame_means, frame_dim=frame_dim)

"""Image-to-video conditioning in PIA's layout: a per-frame mask and the conditioning latent.

Adapters with an image-conditioning branch (``image_cond_channels == 5``, PIA's layout) take
``cat([mask(1), cond_latent(4)])`` on every frame. The mask is 1.0 on the conditioning frame and, for
adapters trained PIA's way (``image_cond_mask="pia"``), a coefficient below 1 on the others, falling
with the distance to it along one of PIA's presets; one-hot adapters get 0 on the others.
"""

from __future__ import annotations

import torch

from motionkit.errors import MotionkitError

# How the conditioning image enters the unconditional guidance branch (``motionkit.pipeline.motion_pipeline``):
# PIA's (the image in both branches) or Stable Video Diffusion's (none there, guidance ramped over frames).
IMAGE_GUIDANCE = ("pia", "svd")


def check_image_guidance(mode: str, name: str = "image_guidance") -> str:
    """``mode`` if it is one of ``IMAGE_GUIDANCE``, or one line saying what is wrong."""
    if mode not in IMAGE_GUIDANCE:
        raise MotionkitError(f"{name} {mode!r} is not one of {', '.join(IMAGE_GUIDANCE)}")
    return mode


def check_strength(strength: float, name: str = "strength") -> float:
    """``strength`` (the share of the schedule image-to-video runs from the image) if it lies in (0, 1], or one
    line saying what is wrong."""
    if not 0.0 < float(strength) <= 1.0:
        raise MotionkitError(f"{name} must lie in (0, 1], got {strength}")
    return strength


# PIA's per-distance coefficients by motion_scale: 0-2 more motion, 3-5 looping, 6-8 style transfer.
MOTION_SCALES: tuple[tuple[float, ...], ...] = (
    (1.0, 0.9, 0.85, 0.85, 0.85, 0.8),
    (1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75),
    (1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5),
    (1.0, 0.9, 0.85, 0.85, 0.85, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.85, 0.85, 0.9, 1.0),
    (1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75, 0.75, 0.75, 0.75, 0.75, 0.78, 0.79, 0.8, 0.8, 1.0),
    (1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.8, 1.0),
    (0.5, 0.4, 0.4, 0.4, 0.35, 0.3),
    (0.5, 0.4, 0.4, 0.4, 0.35, 0.35, 0.3, 0.25, 0.2),
    (0.5, 0.2),
)


def mask_coefficients(num_frames: int, motion_scale: int = 0, cond_frame: int = 0) -> list[float]:
    """One mask value per frame, indexed by distance to ``cond_frame`` (the last value repeats)."""
    if not 0 <= motion_scale < len(MOTION_SCALES):
        raise MotionkitError(f"motion_scale {motion_scale} is not a preset: choose 0 to {len(MOTION_SCALES) - 1}")
    preset = MOTION_SCALES[motion_scale]
    return [preset[min(abs(f - cond_frame), len(preset) - 1)] for f in range(num_frames)]


def mask_values(num_frames: int, mask: str = "pia", motion_scale: int = 0, cond_frame: int = 0) -> list[float]:
    """Per-frame mask for an adapter trained with ``mask`` (``"pia"`` coefficients or ``"one_hot"``)."""
    if mask == "one_hot":
        return [1.0 if f == cond_frame else 0.0 for f in range(num_frames)]
    return mask_coefficients(num_frames, motion_scale, cond_frame)


def image_cond(cond_latent: torch.Tensor, num_frames: int, motion_scale: int = 0, mask: str = "pia") -> torch.Tensor:
    """``[B, 5, F, h, w]``: mask then ``cond_latent`` ``[B, 4, h, w]`` (already × scaling_factor) on every frame."""
    b, _, h, w = cond_latent.shape
    values = mask_values(num_frames, mask, motion_scale)
    coef = torch.tensor(values, dtype=cond_latent.dtype, device=cond_latent.device)
    mask = coef.view(1, 1, num_frames, 1, 1).expand(b, 1, num_frames, h, w)
    latent = cond_latent.unsqueeze(2).expand(-1, -1, num_frames, -1, -1)
    return torch.cat([mask, latent], dim=1)

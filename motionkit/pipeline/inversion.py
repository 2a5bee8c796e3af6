"""Image-to-video starting noise drawn from the image itself: the DDIM inversion of its latent.

Image-to-video starts every frame from the image latent noised to the first timestep the strength keeps
(img2img). With independent noise the model decides each frame's layout anew from a weak signal (at strength
0.8 the image is about a quarter of the start), so a picture the model does not know turns into a scene it
does. The DDIM inversion of the image is the noise the image model itself denoises back into that image
(the inversion Null-text inversion, AnimateZero and ComfyUI's "unsampler" nodes start from); giving each
frame ``share`` of its starting-noise variance from it keeps the image's layout in every frame's start,
while the frame's own noise (the rest) lets the frames differ for the motion modules to move.

``invert_image`` runs the inversion with any noise predictor, ``mix_inverted`` mixes it into the frames'
noise; ``MotionPipeline``'s ``image_inversion`` uses both with the image model alone (motion modules off,
the positive prompt, no guidance), the usual setting of DDIM inversion.
"""

from __future__ import annotations

from typing import Callable

import torch

from motionkit.errors import MotionkitError

# (latent x_t [B, C, h, w], integer timestep t) -> the model's noise prediction at (x_t, t)
NoisePredictor = Callable[[torch.Tensor, int], torch.Tensor]


def check_image_inversion(share: float, name: str = "image_inversion") -> float:
    """``share`` as a float in [0, 1], or a one-line refusal naming ``name``."""
    try:
        value = float(share)
    except (TypeError, ValueError):
        raise MotionkitError(f"{name} must be a number in [0, 1], got {share!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise MotionkitError(
            f"{name} must lie in [0, 1] (the share of each frame's starting noise taken from the image's "
            f"inversion; 0 is off), got {share!r}"
        )
    return value


def invert_image(
    predict_noise: NoisePredictor, latent: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """The noise ``eps`` whose img2img start ``sqrt(a) latent + sqrt(1 - a) eps`` (``a`` at ``timesteps[0]``)
    is the DDIM inversion of ``latent`` through ``timesteps``, the schedule sampling will run (descending).

    The inversion walks the schedule backwards from the clean latent: at each step the predicted noise at the
    current point carries the predicted clean latent to the next, noisier timestep (deterministic DDIM,
    eta 0). In the variance-preserving parameterisation of ``alphas_cumprod``, so it serves every scheduler
    that noises with them (DDIM, Euler, DPM-Solver, LCM). Returned in ``latent``'s shape and dtype."""
    if timesteps.ndim != 1 or len(timesteps) == 0:
        raise MotionkitError("the inversion needs the schedule's timesteps, a non-empty 1-D tensor")
    alphas = alphas_cumprod.to(device=latent.device, dtype=torch.float64)
    x = latent.to(torch.float64)
    alpha_prev, t_prev = torch.ones((), dtype=torch.float64, device=latent.device), 0
    for t in reversed([int(round(float(step))) for step in timesteps]):
        eps = predict_noise(x.to(latent.dtype), t_prev).to(torch.float64)
        clean = (x - (1.0 - alpha_prev).sqrt() * eps) / alpha_prev.sqrt()
        alpha_prev, t_prev = alphas[t], t
        x = alpha_prev.sqrt() * clean + (1.0 - alpha_prev).sqrt() * eps
    start = alphas[int(round(float(timesteps[0])))]
    return ((x - start.sqrt() * latent.to(torch.float64)) / (1.0 - start).sqrt()).to(latent.dtype)


def mix_inverted(noise: torch.Tensor, inverted: torch.Tensor, share: float, *, frame_dim: int = 2) -> torch.Tensor:
    """Every frame's noise with ``share`` of its variance from ``inverted`` (one per video, no frame axis):
    ``sqrt(share) inverted + sqrt(1 - share) noise``. ``share`` 0 returns ``noise`` itself."""
    share = check_image_inversion(share)
    if share == 0.0:
        return noise
    return share**0.5 * inverted.unsqueeze(frame_dim).to(noise) + (1.0 - share) ** 0.5 * noise

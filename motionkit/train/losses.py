"""The denoising objective: what the UNet predicts, and the loss on it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prediction_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """The noise for epsilon prediction, the velocity ``alpha_t * eps - sigma_t * x0`` for v-prediction."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"prediction type {kind!r} is not trainable here: use epsilon or v_prediction")


def diffusion_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    frame_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE in fp32 (an fp16 square of a large error overflows) averaged over every element; with
    ``weights`` (one per clip) each clip's mean is weighted before the batch mean; ``frame_mask``
    (``[B, F]`` for ``[B, C, F, h, w]`` predictions) leaves the frames marked 0 out of their clip's mean."""
    if weights is None and frame_mask is None:
        return F.mse_loss(prediction.float(), target.float(), reduction="mean")
    error = (prediction.float() - target.float()).pow(2)
    if frame_mask is None:
        per_clip = error.reshape(prediction.shape[0], -1).mean(dim=1)
    else:
        per_frame = error.transpose(1, 2).flatten(2).mean(dim=2)
        mask = frame_mask.to(per_frame)
        per_clip = (per_frame * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    if weights is None:
        return per_clip.mean()
    return (per_clip * weights.to(per_clip)).mean()

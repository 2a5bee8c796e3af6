"""Which timesteps a training step sees, and how much each one's error counts.

Sampling (``TrainConfig.timestep_sampling``), one draw per clip from the clip's own generator:
- ``uniform``: ``t ~ U{0, ..., T-1}`` (DDPM, AnimateDiff; the default, and the draw older runs made);
- ``logit_normal``: ``t = floor(T * sigmoid(mean + std * n))``, ``n ~ N(0, 1)`` (Esser et al. 2024, SD3's
  logit-normal sampling); ``logit_normal_mean > 0`` leans towards high noise;
- ``mixed``: uniform with probability ``uniform_share``, logit-normal otherwise: high noise gets extra
  steps while every timestep keeps at least its uniform share (low noise does not starve).

Weighting (``TrainConfig.loss_weighting``) of each clip's mean squared error:
- ``none``: plain MSE;
- ``min_snr``: Min-SNR-gamma (Hang et al. 2023): ``min(SNR, gamma) / SNR`` on an epsilon error,
  ``min(SNR, gamma) / (SNR + 1)`` on a velocity error; it lowers the weight of low noise;
- ``v``: the error the same prediction has as a velocity: ``1 + 1/SNR = 1/alpha_bar`` times the epsilon
  error (the weighting of v-prediction and of EDM), capped at ``max_loss_weight``. At high noise an
  epsilon error is small even when the clean-image estimate is far off (``x0`` error = epsilon error /
  SNR), so plain MSE gives those steps almost no gradient; this is where an image condition matters most.
"""

from __future__ import annotations

import torch

from motionkit.train.config import TrainConfig


def sample_timestep(config: TrainConfig, generator: torch.Generator, num_train_timesteps: int) -> torch.Tensor:
    """One training timestep (a 0-d int64 tensor) drawn from ``generator`` as ``config`` says."""
    kind = config.timestep_sampling
    if kind == "mixed":
        kind = "uniform" if float(torch.rand((), generator=generator)) < config.uniform_share else "logit_normal"
    if kind == "uniform":
        return torch.randint(0, num_train_timesteps, (), generator=generator)
    normal = torch.randn((), generator=generator, dtype=torch.float64)
    u = torch.sigmoid(config.logit_normal_mean + config.logit_normal_std * normal)
    return (u * num_train_timesteps).floor().clamp(0, num_train_timesteps - 1).to(torch.int64)


def snr(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """``alpha_bar / (1 - alpha_bar)`` at ``timesteps``."""
    alpha = alphas_cumprod.to(timesteps.device, torch.float64)[timesteps]
    return alpha / (1.0 - alpha)


def loss_weights(config: TrainConfig, alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, prediction_type: str) -> torch.Tensor | None:
    """Per-clip weights of the MSE for ``timesteps`` (None: unweighted)."""
    if config.loss_weighting == "none":
        return None
    ratio = snr(alphas_cumprod, timesteps)
    if config.loss_weighting == "min_snr":
        clipped = ratio.clamp(max=config.min_snr_gamma)
        weights = clipped / (ratio + 1.0) if prediction_type == "v_prediction" else clipped / ratio
    elif prediction_type == "v_prediction":  # "v": the error already is a velocity error
        weights = torch.ones_like(ratio)
    else:
        weights = (1.0 + 1.0 / ratio).clamp(max=config.max_loss_weight)
    return weights.float()

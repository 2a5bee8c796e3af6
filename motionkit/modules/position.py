"""Fixed sinusoidal frame positions, as AnimateDiff and diffusers compute them (never learned)."""

import math

import torch


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """``[length, dim]`` table: sin on even channels, cos on odd ones, wavelengths up to 10000."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table

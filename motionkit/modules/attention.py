"""Self-attention over the frames of each spatial position."""

import torch
from torch import nn

from motionkit.kernels.dispatch import check_backend, temporal_attention


class TemporalAttention(nn.Module):
    """``to_q / to_k / to_v`` without bias, ``to_out.0`` with bias: the AnimateDiff and diffusers key layout."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"{dim} channels do not split into {heads} attention heads: choose heads that divide {dim}")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(dropout)])
        self.backend = "auto"

    def set_backend(self, name: str) -> None:
        self.backend = check_backend(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[N, F, C]`` tokens (N = videos x spatial positions)."""
        out = temporal_attention(self.to_q(x), self.to_k(x), self.to_v(x), self.heads, self.backend)
        return self.to_out[1](self.to_out[0](out))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, backend={self.backend}"

"""Self-attention over the frames of each spatial position."""

import torch
import torch.nn.functional as F
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
        # One [C, 3C] projection instead of three [C, C] ones: a wider GEMM runs nearer the matmul peak.
        # Off, or with LoRA-wrapped projections, the three layers run one by one.
        self.fuse_projections = True

    def set_backend(self, name: str) -> None:
        self.backend = check_backend(name)

    def _projections(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        layers = (self.to_q, self.to_k, self.to_v)
        if not self.fuse_projections or any(type(layer) is not nn.Linear for layer in layers):
            return tuple(layer(x) for layer in layers)
        weight = torch.cat([layer.weight for layer in layers])  # differentiable: each layer gets its own gradient
        return F.linear(x, weight).chunk(3, dim=-1)  # strided views; every attention backend takes them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[N, F, C]`` tokens (N = videos x spatial positions)."""
        out = temporal_attention(*self._projections(x), self.heads, self.backend)
        return self.to_out[1](self.to_out[0](out))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, backend={self.backend}, fuse_projections={self.fuse_projections}"

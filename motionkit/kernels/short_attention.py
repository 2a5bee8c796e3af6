"""Attention for short sequences on CPU: batched matmuls over a materialised score matrix.

At 16 to 24 frames with head dims of 8 to 16 (the temporal attention of SD-1.5-shaped UNets scaled
down), SDPA's CPU kernel spends most of its time outside the products, its backward above all: the
sequences are too short to amortise its online softmax. Materialising the ``L x L`` scores per head and
running plain ``bmm`` / softmax / ``bmm`` is faster there (forward and backward of a 16-frame, head-dim-8
layer: 12 ms against 22), and backward needs only the saved probabilities, no larger than the inputs
at these lengths. From 32 frames, or at head dim 40 and up, SDPA is as fast or faster, so ``fits``
says no. Same result as SDPA within fp32 rounding.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

# Where it measured faster than SDPA (CPU, one thread); the saved scores also grow with L^2.
MAX_SEQUENCE = 24
MAX_HEAD_DIM = 16


def fits(query: torch.Tensor, heads: int) -> bool:
    """True where this path is the faster one measured for self-attention over ``query`` ``[N, L, C]``."""
    return (
        query.device.type == "cpu"
        and query.dtype == torch.float32
        and query.shape[-2] <= MAX_SEQUENCE
        and query.shape[-1] // heads <= MAX_HEAD_DIM
    )


def _heads_first(x: torch.Tensor, heads: int) -> torch.Tensor:
    n, length, c = x.shape
    return x.reshape(n, length, heads, c // heads).transpose(1, 2).reshape(n * heads, length, c // heads)


def _heads_last(x: torch.Tensor, n: int) -> torch.Tensor:
    """``[N*H, L, d]`` back to ``[N, L, H*d]`` as a view (callers' next product makes it contiguous)."""
    nh, length, d = x.shape
    return x.view(n, nh // n, length, d).transpose(1, 2).reshape(n, length, nh // n * d)


class _ShortAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        # Scaled inside the product, not in place after it: selective recompute may keep the product's output.
        scores = torch.baddbmm(q.new_zeros(()), q, k.transpose(1, 2), beta=0.0, alpha=scale)
        probs = torch.softmax(scores, dim=-1)
        ctx.save_for_backward(q, k, v, probs)
        ctx.scale = scale
        return torch.bmm(probs, v)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, probs = ctx.saved_tensors
        grad_v = torch.bmm(probs.transpose(1, 2), grad_out)
        grad_probs = torch.bmm(grad_out, v.transpose(1, 2))
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype).mul_(ctx.scale)
        grad_q = torch.bmm(grad_scores, k)
        grad_k = torch.bmm(grad_scores.transpose(1, 2), q)
        return grad_q, grad_k, grad_v, None


def short_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V per head; ``[N, Lq, C]`` queries, ``[N, Lk, C]`` keys and values (any
    strides), ``[N, Lq, C]`` out."""
    n, _, c = query.shape
    scale = 1.0 / math.sqrt(c // heads)
    q, k, v = (_heads_first(t, heads) for t in (query, key, value))
    return _heads_last(_ShortAttention.apply(q, k, v, scale), n)

"""Temporal attention behind one switch: ``auto | sdpa | math | xformers | triton``.

``auto`` may also pick ``short`` (``motionkit.kernels.short_attention``), which has no switch of its own.

Every backend takes query/key/value as ``[N, F, C]`` (N sequences of F frames, heads packed in
C, any strides: views of a fused QKV projection are fine) and returns ``[N, F, C]``.
"""

from __future__ import annotations

import functools
import importlib.util
import math

import torch
import torch.nn.functional as F

from motionkit.errors import BackendUnavailableError, MotionkitError
from motionkit.kernels import auto_policy, short_attention

BACKENDS = ("auto", "sdpa", "math", "xformers", "triton")

# CUDA launches put the batch on a grid axis capped at 65 535 (see research notes): chunk below it.
XFORMERS_MAX_BATCH = 65_535


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise MotionkitError(f"unknown attention backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name == "xformers" and importlib.util.find_spec("xformers") is None:
        raise BackendUnavailableError(
            "attention backend 'xformers' needs the xformers package: pip install xformers "
            "(CUDA only), or use backend 'sdpa'"
        )
    if name == "triton" and importlib.util.find_spec("triton") is None:
        raise BackendUnavailableError(
            "attention backend 'triton' needs the triton package: pip install triton, or use backend 'sdpa'"
        )
    return name


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    n, f, c = x.shape
    return x.view(n, f, heads, c // heads).transpose(1, 2)  # [N, heads, F, d], a view


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    n, heads, f, d = x.shape
    return x.transpose(1, 2).reshape(n, f, heads * d)


def sdpa_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int) -> torch.Tensor:
    out = F.scaled_dot_product_attention(
        _split_heads(query, heads), _split_heads(key, heads), _split_heads(value, heads)
    )
    return _merge_heads(out)


def math_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int) -> torch.Tensor:
    """Explicit softmax(QK^T / sqrt(d)) V, accumulated in fp32: the reference the others are tested against."""
    q, k, v = (_split_heads(t, heads) for t in (query, key, value))
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    out = torch.matmul(scores.softmax(dim=-1), v.float()).to(query.dtype)
    return _merge_heads(out)


def xformers_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int) -> torch.Tensor:
    import xformers.ops as xops

    n, f, c = query.shape
    d = c // heads
    # xformers wants [B, M, H, K]; its CUDA grid fails past 65 535 batches, so chunk the sequences.
    q, k, v = (t.reshape(n, f, heads, d) for t in (query, key, value))
    chunks = [
        xops.memory_efficient_attention(q[i : i + XFORMERS_MAX_BATCH], k[i : i + XFORMERS_MAX_BATCH], v[i : i + XFORMERS_MAX_BATCH])
        for i in range(0, n, XFORMERS_MAX_BATCH)
    ]
    return torch.cat(chunks).reshape(n, f, c)


def triton_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int) -> torch.Tensor:
    from motionkit.kernels import triton_attention as kernel

    return kernel.triton_temporal_attention(query, key, value, heads)


def _triton_fits(query: torch.Tensor, heads: int) -> bool:
    if not query.is_cuda or importlib.util.find_spec("triton") is None:
        return False
    from motionkit.kernels import triton_attention as kernel

    return kernel.supports(query, heads)


@functools.lru_cache(maxsize=None)
def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device)


def resolve_backend(name: str, query: torch.Tensor, heads: int) -> str:
    """The concrete backend for this call. ``auto`` picks Triton only on CUDA, where the shape fits and
    the measured decision table (``motionkit/kernels/auto_policy.json``) says the kernel beats SDPA on
    this GPU for this dtype, frame count, head dim and size; on CPU in fp32, for short sequences at small
    head dims, the materialised-score path (``motionkit.kernels.short_attention.fits``); everywhere else SDPA."""
    if name != "auto":
        return name
    if short_attention.fits(query, heads):
        return "short"
    if not _triton_fits(query, heads):
        return "sdpa"
    channels, frames = query.shape[-1], query.shape[-2]
    sequences = query.numel() // (frames * channels)
    return auto_policy.choose(
        auto_policy.active_policy(),
        _device_name(query.device),
        query.dtype,
        frames=frames,
        head_dim=channels // heads,
        pairs=sequences * heads,
        training=torch.is_grad_enabled() and query.requires_grad,
    )


_IMPLEMENTATIONS = {
    "sdpa": sdpa_attention,
    "math": math_attention,
    "xformers": xformers_attention,
    "triton": triton_attention,
    "short": short_attention.short_attention,  # chosen by ``auto`` only
}


def temporal_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int, backend: str = "auto"
) -> torch.Tensor:
    """Self-attention over frames for each of N sequences. Shapes ``[N, F, C]`` in and out."""
    return _IMPLEMENTATIONS[resolve_backend(backend, query, heads)](query, key, value, heads)

"""Selective recompute for motion modules: keep what is costly to redo for backward, rerun the rest.

A motion module's activations are mostly cheap to make again: norms, activations, position and residual
adds, head splits and layout copies. With ``recompute="cheap"`` a module saves only the outputs of its
matrix products and attention cores (and its input); backward reruns the rest from them. With
``"feed_forward"`` the feed-forward's widening projection (8 channels out per channel in: the largest
activation) is rerun too, one extra matrix product per block for the most memory. Both give the same
gradients as ``"none"`` (plain autograd), since backward reruns the very operators forward ran.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterator

import torch
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

RECOMPUTE_MODES = ("none", "cheap", "feed_forward")

_aten = torch.ops.aten
# Operators whose outputs are worth keeping: products and attention cores (on any device).
_KEPT = {
    _aten.mm.default,
    _aten.addmm.default,
    _aten.bmm.default,
    _aten.baddbmm.default,
    _aten.convolution.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
    _aten._scaled_dot_product_flash_attention.default,
    _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_cudnn_attention.default,
}

_region = threading.local()


@contextmanager
def feed_forward_region() -> Iterator[None]:
    """Marks the operators of a feed-forward, which ``"feed_forward"`` reruns whole."""
    outer = getattr(_region, "feed_forward", False)
    _region.feed_forward = True
    try:
        yield
    finally:
        _region.feed_forward = outer


def check_recompute(mode: str) -> str:
    if mode not in RECOMPUTE_MODES:
        raise ValueError(f"unknown recompute mode {mode!r}: choose one of {', '.join(RECOMPUTE_MODES)}")
    return mode


def _policy(mode: str, _ctx: Any, op: Any, *_args: Any, **_kwargs: Any) -> CheckpointPolicy:
    if mode == "feed_forward" and getattr(_region, "feed_forward", False):
        return CheckpointPolicy.PREFER_RECOMPUTE
    return CheckpointPolicy.MUST_SAVE if op in _KEPT else CheckpointPolicy.PREFER_RECOMPUTE


def selective_checkpoint(fn: Callable[..., torch.Tensor], *args: Any, mode: str) -> torch.Tensor:
    """``fn(*args)`` keeping only what ``mode`` keeps for backward (``mode`` other than ``"none"``)."""
    context = partial(create_selective_checkpoint_contexts, partial(_policy, mode))
    return checkpoint(fn, *args, use_reentrant=False, context_fn=context)

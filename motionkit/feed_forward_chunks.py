"""The UNet's spatial feed-forwards run a few frames at a time on CPU: same result, far less memory traffic.

A feed-forward works token by token, and its GEGLU activation is eight times as wide as its input; over a
whole frame batch that activation is tens of MiB, so on CPU the elementwise steps wait on memory.
Chunked over frames (diffusers' own ``set_chunk_feed_forward``) each chunk's activation stays in cache.
Blocks whose chunking a user set are left alone; the setting is restored after every forward.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn

# Tokens (frames x positions at the UNet's full latent size) a chunk should hold.
CHUNK_TOKENS = 512


def frames_per_chunk(frames_in_batch: int, positions: int) -> int:
    """The largest divisor of ``frames_in_batch`` whose frames hold at most ``CHUNK_TOKENS`` tokens (at least 1);
    diffusers requires chunks that divide the batch."""
    target = max(1, CHUNK_TOKENS // max(positions, 1))
    return max(d for d in range(1, min(target, frames_in_batch) + 1) if frames_in_batch % d == 0)


def transformer_blocks(unet: nn.Module) -> list[nn.Module]:
    """The blocks of ``unet`` whose feed-forward diffusers can chunk (found once: the walk costs every step)."""
    return [m for m in unet.modules() if hasattr(m, "set_chunk_feed_forward") and hasattr(m, "_chunk_size")]


@contextmanager
def chunked_feed_forwards(blocks: list[nn.Module], frames_in_batch: int, positions: int) -> Iterator[None]:
    """Within the block, every feed-forward of ``blocks`` (``transformer_blocks``) not already chunked runs in
    frame chunks."""
    chunk = frames_per_chunk(frames_in_batch, positions)
    changed = [b for b in blocks if b._chunk_size is None] if chunk < frames_in_batch else []
    for block in changed:
        block.set_chunk_feed_forward(chunk, 0)
    try:
        yield
    finally:
        for block in changed:
            block.set_chunk_feed_forward(None, 0)

"""The order clips are seen in: one shuffled permutation per epoch, cut into global batches, each
process taking its contiguous share; it can start from any batch of any epoch (resume).

A global batch ``k`` of epoch ``e`` is positions ``[k*W*B, (k+1)*W*B)`` of the epoch's order, and
process ``r`` takes ``[k*W*B + r*B, k*W*B + (r+1)*B)``. So W processes with batch B see exactly the
clips one process with batch W*B sees, and a clip's *position* (epoch, place in the order) names it
independently of the process layout; per-clip randomness (noise, timestep) is seeded by it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from motionkit.errors import MotionkitError


def position_generator(seed: int, epoch: int, position: int) -> torch.Generator:
    """A generator owned by one clip position: its draws do not depend on batch size or process count."""
    digest = hashlib.sha256(f"motionkit-train/{seed}/{epoch}/{position}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices for process ``rank`` of ``world_size`` (the last partial batch dropped)."""

    def __init__(
        self, dataset_size: int, batch_size: int, *, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ) -> None:
        global_batch = batch_size * world_size
        if dataset_size < global_batch:
            raise MotionkitError(
                f"the dataset has {dataset_size} clips, fewer than one global batch of {global_batch} "
                f"({world_size} processes x batch {batch_size}): lower batch_size or add clips"
            )
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset_size // (self.batch_size * self.world_size)

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.dataset_size))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.dataset_size, generator=generator).tolist()

    def positions(self, batch: int) -> list[int]:
        """Places in the epoch's order of this process's clips in global batch ``batch``."""
        first = batch * self.batch_size * self.world_size + self.rank * self.batch_size
        return list(range(first, first + self.batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order(self.epoch)
        for batch in range(self.start_batch, self.batches_per_epoch):
            yield [order[p] for p in self.positions(batch)]

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0)

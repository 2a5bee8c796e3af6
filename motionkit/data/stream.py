"""A streaming training dataset over tar shards (:mod:`motionkit.data.shards`), split by rank and by
DataLoader worker, with a position that can be saved and restored exactly.

The order of epoch ``e`` is decided from the index alone, before anything is read:

1. the shards are permuted with a generator seeded by ``(seed, e)`` (no permutation with
   ``shuffle=False``) and dealt to ranks round-robin (shard ``i`` of the order to rank ``i % W``), as
   WebDataset's ``split_by_node`` does;
2. each rank reads its shards in that order, the samples of a shard in an order seeded by
   ``(seed, e, shard)``, and cuts the sequence into batches of ``batch_size``; every rank stops at the
   same number of batches (the smallest rank's), so processes never wait on each other;
3. DataLoader worker ``w`` of ``N`` produces batches ``start + w, start + w + N, ...``: the loader's
   round-robin returns them in order, so the batch sequence does not depend on the worker count.

A rank opens only its own shards, and a worker reads only its own batches (at the offsets the shard
index records). Per-sample randomness (start frame, flip, caption dropout) is seeded by the sample's
position, as for map-style data. Resume is therefore exact: :meth:`ShardStream.set_position` with the
saved ``(epoch, batch)`` replays the same batches, bitwise on CPU; :meth:`ShardStream.state_dict`
records what must not change in between (the index, batch size, process count, seed).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from motionkit.data.datasets import SKIPPABLE_ERRORS, ClipSource, plan_clip
from motionkit.data.shards import ShardIndex, read_member
from motionkit.errors import MotionkitError

logger = logging.getLogger(__name__)

__all__ = ["SampleRef", "ShardStream"]


@dataclass(frozen=True)
class SampleRef:
    shard: int
    sample: int


def _seeded(*parts: Any) -> torch.Generator:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


class ShardStream(IterableDataset):
    """Training samples streamed from a shard folder; see the module docstring for the order.

    Items are the map-style datasets' items: ``{"pixel_values" [F, 3, H, W] in [-1, 1], "prompt",
    "path"}`` from ``video`` shards, ``{"latents", "prompt", "path"}`` from ``latents`` shards. Use it
    with ``DataLoader(stream, batch_size=stream.batch_size, num_workers=n,
    multiprocessing_context=loader_context(n))`` (:mod:`motionkit.utils.worker_processes`: workers forked
    from a clean fork server, not from the trainer).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        n_frames: int = 16,
        stride: int | None = 4,
        fps: float | None = None,
        size: tuple[int, int] | None = (256, 256),
        flip_prob: float = 0.5,
        caption_dropout: float = 0.0,
        random_start: bool = True,
        max_skips: int = 20,
    ) -> None:
        self.index = ShardIndex.open(root)
        if batch_size < 1 or not 0 <= rank < world_size:
            raise MotionkitError(f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, {world_size}")
        if len(self.index.shards) < world_size:
            raise MotionkitError(
                f"{root}: {len(self.index.shards)} shard(s) for {world_size} processes; every process needs one:"
                " rewrite with a smaller --clips-per-shard"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.n_frames = n_frames
        self.stride = stride
        self.fps = fps
        self.size = tuple(size) if size is not None else None
        self.buckets = None
        self.flip_prob = flip_prob
        self.caption_dropout = caption_dropout
        self.random_start = random_start
        self.max_skips = max_skips
        self.epoch = 0
        self.start_batch = 0
        self._check_latents()

    def _check_latents(self) -> None:
        spec = self.index.latents
        if self.index.kind != "latents" or spec is None:
            return
        wanted = {"n_frames": self.n_frames, "stride": self.stride, "size": self.size[0] if self.size else None}
        if any(spec.get(k) != v for k, v in wanted.items()):
            raise MotionkitError(
                f"{self.index.root}: latents were encoded for {spec} but training asks for {wanted};"
                " match data.n_frames / stride / size or write new latent shards"
            )

    # ------------------------------------------------------------------ order

    def _rank_shards(self, epoch: int, rank: int) -> list[int]:
        count = len(self.index.shards)
        order = torch.randperm(count, generator=_seeded("shards", self.seed, epoch)).tolist() if self.shuffle else list(range(count))
        return order[rank :: self.world_size]

    def batches_in_epoch(self, epoch: int) -> int:
        counts = self.index.sample_counts
        per_rank = [sum(counts[s] for s in self._rank_shards(epoch, r)) for r in range(self.world_size)]
        return min(per_rank) // self.batch_size

    def epoch_batches(self, epoch: int) -> list[list[SampleRef]]:
        """This rank's batches of ``epoch`` (reads the per-shard indexes, never a tar)."""
        sequence: list[SampleRef] = []
        for shard in self._rank_shards(epoch, self.rank):
            count = self.index.sample_counts[shard]
            order = (
                torch.randperm(count, generator=_seeded("samples", self.seed, epoch, shard)).tolist()
                if self.shuffle
                else list(range(count))
            )
            sequence.extend(SampleRef(shard, i) for i in order)
        total = self.batches_in_epoch(epoch)
        if total < 1:
            raise MotionkitError(
                f"{self.index.root}: fewer clips per process than one batch of {self.batch_size}; lower batch_size"
            )
        return [sequence[k * self.batch_size : (k + 1) * self.batch_size] for k in range(total)]

    @property
    def batches_per_epoch(self) -> int:
        return self.batches_in_epoch(self.epoch)

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        """Start the next iteration at global batch ``start_batch`` of epoch ``epoch``."""
        self.epoch, self.start_batch = epoch, start_batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def positions(self, batch: int) -> list[int]:
        """Places of this process's samples of global batch ``batch`` (the seeds of their randomness),
        numbered as :class:`~motionkit.train.sampler.ResumableBatchSampler` numbers them."""
        first = batch * self.batch_size * self.world_size + self.rank * self.batch_size
        return list(range(first, first + self.batch_size))

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0) * self.batch_size

    # ------------------------------------------------------------------ state

    def state_dict(self, epoch: int | None = None, batch: int | None = None) -> dict[str, Any]:
        """The stream position (``epoch``, next ``batch``) and what must stay equal for it to mean the same."""
        return {
            "index_sha256": self.index.fingerprint,
            "epoch": self.epoch if epoch is None else epoch,
            "batch": self.start_batch if batch is None else batch,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "seed": self.seed,
            "shuffle": self.shuffle,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict`; refuses one saved for other shards or layout."""
        mine = self.state_dict()
        if state.get("index_sha256") != mine["index_sha256"]:
            raise MotionkitError(
                f"{self.index.root}: the shards changed since the checkpoint was written; resume needs the same shards"
            )
        changed = [k for k in ("batch_size", "world_size", "seed", "shuffle") if state.get(k) != mine[k]]
        if changed:
            detail = ", ".join(f"{k} {state.get(k)} -> {mine[k]}" for k in changed)
            raise MotionkitError(f"the checkpoint's data stream was cut for another layout ({detail}); resume with the same one")
        self.set_position(int(state["epoch"]), int(state["batch"]))

    # ------------------------------------------------------------------ reading

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self.epoch
        batches = self.epoch_batches(epoch)
        flat = [ref for batch in batches for ref in batch]
        for k in range(self.start_batch + worker, len(batches), workers):
            for j, position in enumerate(self.positions(k)):
                yield self._item(flat, k * self.batch_size + j, epoch, position)

    def _item(self, flat: list[SampleRef], at: int, epoch: int, position: int) -> dict[str, Any]:
        """Sample ``at`` of this rank's sequence; an unreadable one is replaced by the next ones."""
        for tried in range(self.max_skips + 1):
            ref = flat[(at + tried) % len(flat)]
            try:
                return self._read(ref, _seeded("stream", self.seed, epoch, position))
            except SKIPPABLE_ERRORS as err:
                logger.warning("skipping unreadable shard sample %s/%d: %s", self.index.shards[ref.shard]["name"], ref.sample, err)
        raise MotionkitError(f"{self.max_skips + 1} unreadable shard samples in a row; rewrite the shards with 'motionkit shard'")

    def _read(self, ref: SampleRef, generator: torch.Generator) -> dict[str, Any]:
        from motionkit.data.decode import decode_clip

        sample = self.index.samples(ref.shard)[ref.sample]
        caption = read_member(self.index, ref.shard, sample, "txt").getvalue().decode("utf-8")
        name = f"{self.index.shards[ref.shard]['name']}/{sample.key}"
        if self.index.kind == "latents":
            from safetensors.torch import load

            latents = load(read_member(self.index, ref.shard, sample, "safetensors").getvalue())["latents"]
            drop = self.caption_dropout > 0 and bool(torch.rand((), generator=generator) < self.caption_dropout)
            return {"latents": latents, "prompt": "" if drop else caption, "path": name}
        source = ClipSource(name, caption, 0, sample.frames, sample.fps, sample.width, sample.height)
        plan = plan_clip(source, generator, self)
        video = read_member(self.index, ref.shard, sample, "mp4")
        pixels = decode_clip(video, plan.indices, size=plan.size, flip=plan.flip, output="tensor")
        return {"pixel_values": pixels, "prompt": plan.prompt, "path": name}

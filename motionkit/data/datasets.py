"""Training datasets of video clips (AnimateDiff's WebVid recipe) and a pre-encoded latent cache.

Each item is one clip: ``n_frames`` frames ``stride`` apart (or resampled to ``fps``) at a random start
inside a curated clip, resized and centre-cropped (to a fixed size or the closest aspect bucket), maybe
flipped, as float ``[F, 3, H, W]`` in [-1, 1], with its prompt (dropped to "" with ``caption_dropout``
for classifier-free guidance). A clip shorter than the ``(n_frames - 1) * stride + 1`` frames a sample
spans trains on closer-spaced (or repeated) frames, with one warning per clip.

Randomness: with ``seed`` set, item ``i`` of epoch ``e`` draws from its own generator seeded by
``(seed, e, i)``, so a sample does not depend on the DataLoader's worker count or order. Without a seed
the global torch RNG is used (DataLoader seeds it per worker).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.utils.data import Dataset

from motionkit.data.decode import DECODE_ERRORS, closest_bucket, decode_clip, indices_by_fps, indices_by_stride
from motionkit.errors import FormatError, MotionkitError

logger = logging.getLogger(__name__)

__all__ = ["ClipPlan", "ClipSource", "LatentCacheDataset", "VideoClipDataset", "cache_key", "captioned", "captions_without", "plan_clip",
           "without_text"]

T = TypeVar("T")

# What makes a sample unusable rather than a bug: the file is gone, corrupt or shorter than recorded.
SKIPPABLE_ERRORS: tuple[type[BaseException], ...] = (FormatError, FileNotFoundError, *DECODE_ERRORS)


@dataclass(frozen=True)
class ClipSource:
    """Where a dataset item comes from: frames ``[start_frame, end_frame)`` of ``path``. ``end_frame``,
    ``fps`` and the size may be None for a whole video not probed yet (folder and CSV sources are
    probed lazily, in the worker that first needs them)."""

    path: str
    caption: str = ""
    start_frame: int = 0
    end_frame: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ClipPlan:
    """Everything random about one sample, decided before decoding (and the latent cache key)."""

    path: str
    indices: tuple[int, ...]
    size: tuple[int, int] | None  # (H, W); None keeps the source size
    flip: bool
    prompt: str


def cache_key(plan: ClipPlan) -> str:
    """Hash of what determines a clip's pixels: path, frame indices, output size and flip."""
    payload = json.dumps([os.path.abspath(plan.path), list(plan.indices), plan.size, plan.flip])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def plan_clip(source: ClipSource, generator: torch.Generator | None, sampling: Any) -> ClipPlan:
    """Frames, size, flip and prompt of one sample of a probed ``source``, drawn from ``generator``.
    ``sampling`` holds the dataset's rules (``n_frames``, ``stride``, ``fps``, ``size``, ``buckets``,
    ``flip_prob``, ``caption_dropout``, ``random_start``), as :class:`VideoClipDataset` does."""
    assert source.end_frame is not None and source.fps is not None
    num = source.end_frame - source.start_frame
    if num < 1:
        raise FormatError(f"{source.path}: empty clip [{source.start_frame}, {source.end_frame})")
    if sampling.fps is not None:
        indices = indices_by_fps(
            num, source.fps, sampling.n_frames, sampling.fps,
            start=source.start_frame, random_start=sampling.random_start, generator=generator,
        )
    else:
        indices = indices_by_stride(
            num, sampling.n_frames, sampling.stride,
            start=source.start_frame, random_start=sampling.random_start, generator=generator,
        )
    if sampling.buckets is not None:
        assert source.width and source.height
        size: tuple[int, int] | None = closest_bucket(source.width, source.height, sampling.buckets)
    else:
        size = sampling.size
    flip = bool(torch.rand((), generator=generator) < sampling.flip_prob) if sampling.flip_prob > 0 else False
    drop = bool(torch.rand((), generator=generator) < sampling.caption_dropout) if sampling.caption_dropout > 0 else False
    return ClipPlan(source.path, tuple(indices), size, flip, "" if drop else source.caption)


def captioned(sources: Sequence[ClipSource], text: str) -> list[ClipSource]:
    """The sources whose caption holds ``text`` (any case), in their order; refuses to return none."""
    needle = text.casefold()
    kept = [s for s in sources if needle in s.caption.casefold()]
    if not kept:
        raise MotionkitError(
            f"no caption of the {len(sources)} clips contains {text!r}: check data.caption_contains "
            "against the captions (sidecar .txt files, manifest or CSV)"
        )
    logger.info("%d of %d clips have %r in their caption", len(kept), len(sources), text)
    return kept


def without_text(caption: str, text: str) -> str:
    """``caption`` with every occurrence of ``text`` (any case) taken out, and the commas and spaces it leaves
    tidied: ``"a ball, camera zooming in"`` without ``"camera zooming in"`` is ``"a ball"``."""
    pieces = re.split(re.escape(text.strip()), caption, flags=re.IGNORECASE)
    joined = ", ".join(piece.strip(" ,") for piece in pieces if piece.strip(" ,"))
    return re.sub(r"\s+", " ", joined)


def captions_without(sources: Sequence[ClipSource], text: str) -> list[ClipSource]:
    """The sources with ``text`` taken out of their captions (``without_text``)."""
    return [replace(s, caption=without_text(s.caption, text)) for s in sources]


class VideoClipDataset(Dataset):
    """Video clips for motion training; see the module docstring for the sampling rules.

    Build it with :meth:`from_manifest` (output of ``motionkit curate``), :meth:`from_folder` (videos with
    ``.txt`` caption sidecars) or :meth:`from_csv` (WebVid-style CSV plus a video folder).

    Unreadable videos are skipped with a logged warning and replaced by the next item; ``skipped``
    counts them (per process: each DataLoader worker keeps its own count). ``caption_contains`` keeps only
    the clips whose caption holds that text (any case); ``caption_remove`` then takes a text out of every
    caption (a MotionLoRA trained on "camera zooming in" clips without those words has to carry the move
    itself, as its users prompt without them).
    """

    def __init__(
        self,
        sources: Sequence[ClipSource],
        *,
        n_frames: int = 16,
        stride: int | None = 4,
        fps: float | None = None,
        size: tuple[int, int] | None = (256, 256),
        buckets: Sequence[tuple[int, int]] | None = None,
        flip_prob: float = 0.5,
        caption_dropout: float = 0.0,
        random_start: bool = True,
        seed: int | None = None,
        max_skips: int = 20,
        caption_contains: str | None = None,
        caption_remove: str | None = None,
    ) -> None:
        if not sources:
            raise MotionkitError("the dataset has no clips; check the manifest, folder or CSV it was built from")
        if caption_contains is not None:
            sources = captioned(sources, caption_contains)
        if caption_remove is not None:
            if not caption_remove.strip():
                raise MotionkitError("caption_remove is empty: give the text to take out of the captions, or leave it out")
            sources = captions_without(sources, caption_remove)
        if n_frames < 1:
            raise MotionkitError(f"n_frames must be >= 1, got {n_frames}")
        if fps is None and (stride is None or stride < 1):
            raise MotionkitError("give a frame stride >= 1 or a target fps")
        if not 0.0 <= caption_dropout <= 1.0 or not 0.0 <= flip_prob <= 1.0:
            raise MotionkitError("caption_dropout and flip_prob are probabilities in [0, 1]")
        self.sources = list(sources)
        self.n_frames = n_frames
        self.stride = stride
        self.fps = fps
        self.size = tuple(size) if size is not None else None
        self.buckets = [tuple(b) for b in buckets] if buckets else None
        self.flip_prob = flip_prob
        self.caption_dropout = caption_dropout
        self.random_start = random_start
        self.seed = seed
        self.epoch = 0
        self.max_skips = max_skips
        self.skipped = 0
        self._bad: set[int] = set()
        self._warned_short: set[int] = set()

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_manifest(cls, manifest: str | os.PathLike[str], **kwargs: Any) -> VideoClipDataset:
        """Clips of a ``motionkit curate`` manifest (bad lines are skipped with a warning)."""
        from motionkit.data.curate import read_manifest

        sources = [
            ClipSource(c.path, c.caption, c.start_frame, c.end_frame, c.fps, c.width, c.height)
            for c in read_manifest(manifest)
        ]
        return cls(sources, **kwargs)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], **kwargs: Any) -> VideoClipDataset:
        """Every video under ``folder`` (recursive), whole, captioned by its ``.txt`` sidecar if any."""
        from motionkit.data.curate import discover_videos, sidecar_caption

        sources = [ClipSource(str(path), sidecar_caption(path) or "") for _, path in discover_videos([folder])]
        return cls(sources, **kwargs)

    @classmethod
    def from_csv(
        cls, csv_path: str | os.PathLike[str], video_dir: str | os.PathLike[str], **kwargs: Any
    ) -> VideoClipDataset:
        """WebVid layout: CSV rows (``videoid``, ``name``/``caption``) matched to videos under ``video_dir``
        by file stem (any sub-folder, e.g. WebVid's ``page_dir``). Rows without a video are dropped and
        counted in a warning."""
        from motionkit.data.curate import discover_videos, load_captions_csv

        captions = load_captions_csv(csv_path)
        by_stem = {path.stem: path for _, path in discover_videos([video_dir])}
        sources = [ClipSource(str(by_stem[vid]), text) for vid, text in captions.items() if vid in by_stem]
        if len(sources) < len(captions):
            missing = len(captions) - len(sources)
            logger.warning("%s: %d of %d rows have no video under %s", csv_path, missing, len(captions), video_dir)
        return cls(sources, **kwargs)

    # ------------------------------------------------------------------ sampling

    def __len__(self) -> int:
        return len(self.sources)

    def set_epoch(self, epoch: int) -> None:
        """New random clips, flips and dropouts per epoch while staying reproducible."""
        self.epoch = epoch

    def _generator(self, index: int) -> torch.Generator | None:
        if self.seed is None:
            return None
        digest = hashlib.sha256(f"{self.seed}/{self.epoch}/{index}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))

    def _probed(self, index: int) -> ClipSource:
        source = self.sources[index]
        if source.end_frame is not None and source.fps and source.width and source.height:
            return source
        from motionkit.video_io import probe_video

        info = probe_video(source.path)
        if info.frames < 1 or not info.fps:
            raise FormatError(f"{source.path}: no frames or frame rate in the file")
        source = replace(
            source,
            end_frame=source.end_frame if source.end_frame is not None else info.frames,
            fps=source.fps or info.fps,
            width=source.width or info.width,
            height=source.height or info.height,
        )
        self.sources[index] = source  # cache the probe (per worker process)
        return source

    def plan(self, index: int) -> ClipPlan:
        """Decide frames, size, flip and prompt of item ``index`` (probing the video if needed)."""
        source = self._probed(index)
        self._warn_if_short(index, source)
        return plan_clip(source, self._generator(index), self)

    def _warn_if_short(self, index: int, source: ClipSource) -> None:
        """Warn once per clip (per process) when it is shorter than the frames one sample spans: it still
        trains, on closer-spaced frames (repeated ones when it has fewer than ``n_frames``)."""
        if self.fps is not None or index in self._warned_short:
            return
        assert source.end_frame is not None and self.stride is not None
        frames = source.end_frame - source.start_frame
        span = (self.n_frames - 1) * self.stride + 1
        if frames < span:
            self._warned_short.add(index)
            what = "repeated frames" if frames < self.n_frames else f"frames closer than stride {self.stride}"
            logger.warning(
                "%s: %d frames, fewer than the %d that %d frames at stride %d span; it trains on %s "
                "(drop it with 'motionkit curate' or lower data.stride / data.n_frames)",
                source.path, frames, span, self.n_frames, self.stride, what,
            )

    def load(self, plan: ClipPlan) -> torch.Tensor:
        """Decode a planned clip to float ``[F, 3, H, W]`` in [-1, 1]."""
        return decode_clip(plan.path, plan.indices, size=plan.size, flip=plan.flip, output="tensor")

    def sample(self, index: int, produce: Callable[[ClipPlan], T]) -> tuple[ClipPlan, T]:
        """``produce(plan)`` for item ``index``, moving on to the next items past unreadable videos."""
        tried = 0
        current = index
        while True:
            if len(self._bad) >= len(self.sources):
                raise MotionkitError(
                    "every video of the dataset is unreadable; check the paths and re-run 'motionkit curate'"
                )
            if current not in self._bad:
                try:
                    plan = self.plan(current)
                    return plan, produce(plan)
                except SKIPPABLE_ERRORS as err:
                    self._bad.add(current)
                    self.skipped += 1
                    logger.warning("skipping unreadable clip %d (%s): %s", current, self.sources[current].path, err)
                    tried += 1
                    if tried > self.max_skips:
                        raise MotionkitError(
                            f"{tried} unreadable videos in a row (last: {self.sources[current].path}); "
                            "re-run 'motionkit curate' on the data to drop broken files"
                        ) from err
            current = (current + 1) % len(self.sources)

    def __getitem__(self, index: int) -> dict[str, Any]:
        plan, pixels = self.sample(index, self.load)
        return {"pixel_values": pixels, "prompt": plan.prompt, "path": plan.path}


class LatentCacheDataset(Dataset):
    """Wraps a :class:`VideoClipDataset` and returns VAE latents instead of pixels, encoding each clip
    once with ``encode`` (pixels ``[F, 3, H, W]`` in [-1, 1] -> latents tensor) and storing it as
    safetensors in ``cache_dir`` under :func:`cache_key`. Files are written atomically, so concurrent
    workers or a killed job never leave a partial latent behind.

    The cache pays off with deterministic clips (``random_start=False``, ``flip_prob=0``); with random
    sampling every new (start, flip) is one more cache entry. Caption dropout is applied per item and
    is not part of the key.
    """

    def __init__(
        self,
        dataset: VideoClipDataset,
        cache_dir: str | os.PathLike[str],
        encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.dataset = dataset
        self.cache_dir = Path(cache_dir)
        self.encode = encode
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def cache_path(self, plan: ClipPlan) -> Path:
        key = cache_key(plan)
        return self.cache_dir / key[:2] / f"{key}.safetensors"

    def _latents(self, plan: ClipPlan) -> torch.Tensor:
        from safetensors import SafetensorError
        from safetensors.torch import load_file, save

        path = self.cache_path(plan)
        if path.is_file():
            try:
                latents = load_file(str(path))["latents"]
                self.hits += 1
                return latents
            except (SafetensorError, OSError, KeyError) as err:
                logger.warning("re-encoding unreadable cache entry %s: %s", path, err)
        if self.encode is None:
            raise MotionkitError(
                f"{path}: latent not cached and no encode function given; pass encode= (the VAE encoder)"
            )
        with torch.no_grad():
            latents = self.encode(self.dataset.load(plan)).detach().to("cpu").contiguous()
        from motionkit.utils.atomic import atomic_write

        metadata = {
            "path": plan.path,
            "indices": json.dumps(list(plan.indices)),
            "size": json.dumps(plan.size),
            "flip": str(plan.flip),
        }
        with atomic_write(path, "wb") as handle:
            handle.write(save({"latents": latents}, metadata=metadata))
        self.misses += 1
        return latents

    def __getitem__(self, index: int) -> dict[str, Any]:
        plan, latents = self.dataset.sample(index, self._latents)
        return {"latents": latents, "prompt": plan.prompt, "path": plan.path}

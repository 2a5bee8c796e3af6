"""Filters and near-duplicate removal on manifests, without decoding a video again.

- :func:`merge_manifests`: the manifests of ``motionkit curate --shard I/N`` runs -> one manifest with
  near-duplicates removed across shards. From parquet manifests (which keep every shot and its
  verdicts) the result equals an unsharded run: duplicates are decided again over every clip that
  passed the per-clip filters, in the same order an unsharded run visits them (by path, then frame).
  JSONL manifests hold only their shard's survivors, so a clip dropped as a duplicate of one that a
  merge then drops stays dropped.
- :func:`filter_manifest`: new thresholds (motion, duration, size, dedup) applied to the measurements a
  parquet manifest already holds. A video that was below ``min_size`` was never split: it stays out
  until it is curated again.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from motionkit.data.analysis import CLIP_FILTERS, CurateOptions, HashIndex, clip_verdicts
from motionkit.data.manifest import FILTERS, ManifestRow, read_rows, rebase_rows, write_rows
from motionkit.errors import MotionkitError

__all__ = ["RefilterReport", "filter_manifest", "merge_manifests", "refilter_rows"]


@dataclass
class RefilterReport:
    rows: int = 0
    kept: int = 0
    removed: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        parts = ", ".join(f"{self.removed.get(name, 0)} {name}" for name in FILTERS)
        return f"{self.rows} row(s), {self.kept} clip(s) kept; removed: {parts}"


def refilter_rows(
    rows: Sequence[ManifestRow], *, options: CurateOptions | None, dedup_threshold: int | None
) -> list[ManifestRow]:
    """Rows sorted by (path, start frame) with fresh verdicts: per-clip filters from ``options`` (None
    keeps the recorded ones), then near-duplicates greedily in that order (None: no dedup)."""
    index = HashIndex(dedup_threshold) if dedup_threshold is not None else None
    out = []
    for row in sorted(rows, key=lambda r: (r.clip.path, r.clip.start_frame, r.clip.end_frame)):
        verdicts = dict(row.verdicts)
        if options is not None and row.measured:
            verdicts.update(clip_verdicts(row.clip, options))
        passed = not any(verdicts.get(name) for name in CLIP_FILTERS)
        if passed and index is not None:
            if not row.clip.hash:
                raise MotionkitError(f"{row.clip.path}: a kept clip without a hash; curate it again")
            value = int(row.clip.hash, 16)
            verdicts["duplicate"] = index.find(value) is not None
            if not verdicts["duplicate"]:
                index.add(value)
        else:
            verdicts["duplicate"] = False if passed else None
        out.append(replace(row, verdicts=verdicts))
    return out


def _write(rows: list[ManifestRow], out: str | os.PathLike[str]) -> RefilterReport:
    write_rows(rebase_rows(rows, out), out)
    report = RefilterReport(rows=len(rows), kept=sum(r.keep for r in rows))
    for row in rows:
        first = next((name for name in FILTERS if row.verdicts.get(name)), None)
        if first is not None:
            report.removed[first] += 1
    return report


def merge_manifests(
    inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, dedup_threshold: int | None = 4
) -> RefilterReport:
    """Concatenate manifests (JSONL or parquet, any mix) into ``out`` and remove near-duplicates across
    them; per-clip verdicts stay as recorded."""
    if not inputs:
        raise MotionkitError("manifest merge: give at least one manifest")
    rows: list[ManifestRow] = []
    seen: set[tuple[str, int, int]] = set()
    for path in inputs:
        if Path(path).resolve() == Path(out).resolve():
            raise MotionkitError(f"{out}: is also an input; write the merged manifest to a new file")
        for row in read_rows(path):
            key = (row.clip.path, row.clip.start_frame, row.clip.end_frame)
            if key in seen:
                raise MotionkitError(f"{path}: clip {key[0]} [{key[1]}, {key[2]}) is in two inputs; merge each shard once")
            seen.add(key)
            rows.append(row)
    return _write(refilter_rows(rows, options=None, dedup_threshold=dedup_threshold), out)


def filter_manifest(
    manifest: str | os.PathLike[str], out: str | os.PathLike[str], options: CurateOptions
) -> RefilterReport:
    """Re-apply ``options`` (thresholds and dedup) to the measurements in ``manifest``, writing ``out``."""
    rows = read_rows(manifest)
    return _write(refilter_rows(rows, options=options, dedup_threshold=options.dedup_threshold), out)

"""Curation inputs: video discovery, shard membership, and captions from the usual dataset layouts.

Caption sources (``motionkit curate --captions``), told apart by their columns:

- WebVid CSV: ``videoid, contentUrl, duration, page_dir, name`` (the caption is ``name``);
- any CSV with ``videoid`` and ``caption``;
- OpenVid-1M CSV: ``video`` (the file name), ``caption``, ``aesthetic score``, ``motion score``, ...;
- Panda-70M CSV: ``videoID, url, timestamp, caption, matching_score`` where ``timestamp`` and
  ``caption`` are lists, one entry per clip of the source video (``[['0:00:00.000', '0:00:05.280'],
  ...]``): a curated clip takes the caption of the Panda clip it overlaps most;
- a video2dataset output folder: its ``<shard>.parquet`` tables (``key``, ``status``, ``caption``), next
  to the ``<shard>/<key>.mp4`` files its ``files`` output format writes.

Videos are matched to captions by file stem (``videoid`` / ``key`` / the stem of ``video``).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from motionkit.errors import MotionkitError

__all__ = [
    "VIDEO_EXTENSIONS",
    "Captions",
    "discover_videos",
    "in_shard",
    "load_captions",
    "load_captions_csv",
    "parse_shard",
    "sidecar_caption",
]

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"})


def discover_videos(inputs: Sequence[str | os.PathLike[str]]) -> list[tuple[str, Path]]:
    """``(key, path)`` for every video under ``inputs`` (files, or folders searched recursively by
    extension), sorted by key. The key is the path relative to the folder given (the file name for a
    file given directly): it does not depend on where the data is mounted, so every machine of a
    sharded run agrees on it."""
    found: dict[Path, str] = {}
    for item in inputs:
        root = Path(item)
        if root.is_file():
            found.setdefault(root.resolve(), root.name)
        elif root.is_dir():
            for file in sorted(root.rglob("*")):
                if file.suffix.lower() in VIDEO_EXTENSIONS and file.is_file() and not file.name.startswith("."):
                    found.setdefault(file.resolve(), file.relative_to(root).as_posix())
        else:
            raise MotionkitError(f"{root}: no such file or folder; check the INPUT path")
    return sorted(((key, path) for path, key in found.items()), key=lambda kp: (kp[0], str(kp[1])))


def shard_of(key: str, count: int) -> int:
    """The shard (of ``count``) that ``key`` belongs to: a stable hash, so adding videos does not move
    existing ones to another shard."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % count


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether ``key`` belongs to shard ``(index, count)``."""
    if shard is None:
        return True
    index, count = shard
    return shard_of(key, count) == index


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise MotionkitError(f"--shard {text!r}: expected I/N such as 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise MotionkitError(f"--shard {text!r}: need 0 <= I < N, e.g. 0/4 .. 3/4")
    return index, count


# --------------------------------------------------------------------------- captions


@dataclass
class Captions:
    """Captions by video stem: one per whole video, or timed segments ``(start_s, end_s, caption)``."""

    whole: dict[str, str] = field(default_factory=dict)
    segments: dict[str, list[tuple[float, float, str]]] = field(default_factory=dict)

    def __contains__(self, stem: str) -> bool:
        return stem in self.whole or stem in self.segments

    def for_clip(self, stem: str, start_s: float, end_s: float) -> tuple[str, tuple[str, ...]] | None:
        """``(caption, every overlapping caption)`` of a clip, or None when the source has no entry."""
        if stem in self.whole:
            return self.whole[stem], (self.whole[stem],)
        parts = self.segments.get(stem)
        if parts is None:
            return None
        overlaps = [(min(end_s, b) - max(start_s, a), text) for a, b, text in parts]
        touching = [(o, text) for o, text in overlaps if o > 0 and text]
        if not touching:
            return "", ()
        best = max(touching, key=lambda item: item[0])[1]
        return best, tuple(text for _, text in touching)


def _seconds(stamp: str) -> float:
    """``'0:01:02.500'`` -> 62.5."""
    total = 0.0
    for part in stamp.strip().split(":"):
        total = total * 60 + float(part)
    return total


def _literal_list(text: str, path: Path, line: int, column: str) -> list:
    try:
        value = ast.literal_eval(text)  # literals only: no code is evaluated
    except (ValueError, SyntaxError):
        raise MotionkitError(f"{path}:{line}: column {column!r} is not a list literal; is this a Panda-70M CSV?") from None
    return value if isinstance(value, list) else [value]


def _read_csv(path: Path) -> Captions:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        captions = Captions()
        if {"videoID", "timestamp", "caption"} <= columns:  # Panda-70M
            for line, row in enumerate(reader, start=2):
                stamps = _literal_list(row["timestamp"], path, line, "timestamp")
                texts = _literal_list(row["caption"], path, line, "caption")
                if len(stamps) != len(texts):
                    raise MotionkitError(f"{path}:{line}: {len(stamps)} timestamps but {len(texts)} captions")
                captions.segments[row["videoID"].strip()] = [
                    (_seconds(a), _seconds(b), str(text).strip()) for (a, b), text in zip(stamps, texts)
                ]
            return captions
        if {"video", "caption"} <= columns and "videoid" not in columns:  # OpenVid-1M
            captions.whole = {Path(row["video"].strip()).stem: (row["caption"] or "").strip() for row in reader}
            return captions
        text_column = "name" if "name" in columns else "caption" if "caption" in columns else None
        if "videoid" not in columns or text_column is None:
            raise MotionkitError(
                f"{path}: caption CSV needs a 'videoid' column and a 'name' or 'caption' column (WebVid), "
                f"'video' and 'caption' (OpenVid-1M) or 'videoID', 'timestamp' and 'caption' (Panda-70M);"
                f" found {sorted(columns)[:10]}"
            )
        captions.whole = {str(row["videoid"]).strip(): (row[text_column] or "").strip() for row in reader}
        return captions


def _read_video2dataset(folder: Path) -> Captions:
    from motionkit.data.manifest import pyarrow_modules

    tables = sorted(folder.glob("*.parquet"))
    if not tables:
        raise MotionkitError(
            f"{folder} is a folder without video2dataset <shard>.parquet tables: give the captions CSV file itself"
        )
    _, pq = pyarrow_modules()
    captions = Captions()
    for table in tables:
        for row in pq.read_table(table).to_pylist():
            if row.get("status", "success") != "success" or row.get("key") is None:
                continue
            text = row.get("caption") if row.get("caption") is not None else row.get("txt")
            captions.whole[str(row["key"])] = str(text or "").strip()
    return captions


def load_captions(path: str | os.PathLike[str]) -> Captions:
    """Captions from a WebVid / OpenVid-1M / Panda-70M CSV or a video2dataset output folder."""
    path = Path(path)
    if path.is_dir():
        return _read_video2dataset(path)
    if not path.is_file():
        raise MotionkitError(f"captions file {path} does not exist: give the path of a CSV with videoid and name columns")
    try:
        return _read_csv(path)
    except (UnicodeDecodeError, csv.Error) as err:
        reason = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else f"not valid CSV ({err})"
        raise MotionkitError(f"{path} is {reason}: give a UTF-8 CSV file with videoid and name columns") from None


def load_captions_csv(path: str | os.PathLike[str]) -> dict[str, str]:
    """WebVid-style CSV -> ``{videoid: caption}``; the caption column is ``name`` (WebVid) or ``caption``."""
    path = Path(path)
    if path.is_dir():
        raise MotionkitError(f"{path} is a folder: give the captions CSV file itself")
    captions = load_captions(path)
    if captions.segments:
        raise MotionkitError(f"{path}: a Panda-70M CSV has captions per clip, not per video; use it with motionkit curate")
    return captions.whole


def sidecar_caption(video: Path) -> str | None:
    """Caption from ``clip.txt`` (or ``clip.mp4.txt``) next to ``clip.mp4``, if present."""
    for candidate in (video.with_suffix(".txt"), video.with_name(video.name + ".txt")):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8", errors="replace").strip()
    return None


def caption_for(video: Path, captions: Captions | None, start_s: float = 0.0, end_s: float = float("inf")) -> tuple[str, tuple[str, ...]]:
    """The caption source's entry (matched on the file stem) wins, then a sidecar; none is the empty prompt.
    Returns ``(caption, all captions)``."""
    if captions is not None:
        found = captions.for_clip(video.stem, start_s, end_s)
        if found is not None:
            return found
    text = sidecar_caption(video) or ""
    return text, (text,) if text else ()

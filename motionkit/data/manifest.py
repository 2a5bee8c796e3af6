"""Clip manifests: one row per clip, as JSONL (kept clips only) or parquet (every clip, with verdicts).

JSONL (``.jsonl``): one :class:`Clip` per line, the clips a training run reads; appendable, so
``motionkit curate`` writes it durably line by line.

Parquet (``.parquet``, needs ``pyarrow``): the source of truth at scale. One :class:`ManifestRow` per
shot, kept or not: the clip's fields, every caption known for it, the curation shard it came from and
each filter's verdict (``filter_<name>``: true when that filter rejects the clip, null when it was not
evaluated) plus ``keep``. Filters can be re-run on it and shards merged with cross-shard near-duplicate
removal (:mod:`motionkit.data.refilter`) without decoding a video again.

Paths are stored relative to the manifest's folder when possible, so a dataset folder can move with
its manifest; readers resolve them again.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from motionkit.errors import MotionkitError

logger = logging.getLogger(__name__)

__all__ = [
    "FILTERS",
    "Clip",
    "ManifestRow",
    "manifest_string",
    "read_manifest",
    "read_rows",
    "resolve_clip_path",
    "write_rows",
]

# Filter names, in the order they are applied and reported.
FILTERS = ("too_small", "too_short", "static", "too_fast", "duplicate")


@dataclass(frozen=True)
class Clip:
    """One manifest line. Frames ``[start_frame, end_frame)`` of ``path``; seconds are the same range."""

    path: str
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    fps: float
    width: int
    height: int
    motion_score: float
    caption: str
    hash: str

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Clip:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        clip = cls(
            path=str(data["path"]),
            start_frame=int(data["start_frame"]),
            end_frame=int(data["end_frame"]),
            start_s=float(data["start_s"]),
            end_s=float(data["end_s"]),
            fps=float(data["fps"]),
            width=int(data["width"]),
            height=int(data["height"]),
            motion_score=float(data["motion_score"]),
            caption=str(data["caption"] if data["caption"] is not None else ""),
            hash=str(data["hash"] if data["hash"] is not None else ""),
        )
        if clip.end_frame <= clip.start_frame or clip.start_frame < 0:
            raise ValueError(f"empty or negative frame range [{clip.start_frame}, {clip.end_frame})")
        return clip


@dataclass(frozen=True)
class ManifestRow:
    """A parquet manifest row: a clip, its verdicts (filter -> rejects it; None: not evaluated), all its
    captions and the curation shard (``-1``: unsharded)."""

    clip: Clip
    verdicts: Mapping[str, bool | None] = field(default_factory=dict)
    captions: tuple[str, ...] = ()
    shard: int = -1

    @property
    def keep(self) -> bool:
        return not any(self.verdicts.get(name) for name in FILTERS)

    @property
    def measured(self) -> bool:
        """Whether motion and hash were computed (a video below ``min_size`` is not even split)."""
        return bool(self.clip.hash) and math.isfinite(self.clip.motion_score)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self.clip)
        out["captions"] = list(self.captions)
        out["shard"] = self.shard
        for name in FILTERS:
            out[f"filter_{name}"] = self.verdicts.get(name)
        out["keep"] = self.keep
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManifestRow:
        """A parquet row or a JSONL line (a JSONL line is a kept clip with no verdicts recorded)."""
        clip = Clip.from_dict(data)
        has_verdicts = any(f"filter_{name}" in data for name in FILTERS)
        verdicts = {name: _bool_or_none(data.get(f"filter_{name}")) for name in FILTERS} if has_verdicts else {}
        captions = data.get("captions")
        captions = tuple(str(c) for c in captions) if captions is not None else ((clip.caption,) if clip.caption else ())
        shard = data.get("shard")
        return cls(clip, verdicts, captions, int(shard) if shard is not None else -1)


def _bool_or_none(value: Any) -> bool | None:
    return None if value is None else bool(value)


# --------------------------------------------------------------------------- paths


def manifest_string(video: str | os.PathLike[str], manifest: str | os.PathLike[str]) -> str:
    """The path string stored for ``video`` in ``manifest``: relative to the manifest's folder."""
    try:
        return Path(os.path.relpath(Path(video).resolve(), Path(manifest).resolve().parent)).as_posix()
    except ValueError:  # another drive on Windows
        return Path(video).as_posix()


def resolve_clip_path(clip_path: str, manifest: str | os.PathLike[str]) -> str:
    path = Path(clip_path)
    return os.path.normpath(path if path.is_absolute() else Path(manifest).resolve().parent / path)


# --------------------------------------------------------------------------- reading


def is_parquet(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in (".parquet", ".pq")


def _require_file(path: Path) -> None:
    if path.is_dir():
        raise MotionkitError(f"{path}: is a folder; give the manifest file (.jsonl or .parquet)")
    if not path.is_file():
        raise MotionkitError(f"{path}: manifest not found; create it with 'motionkit curate VIDEOS --out {path.name}'")


def pyarrow_modules() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or one line saying how to install them."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise MotionkitError("parquet manifests need pyarrow: pip install 'motionkit[ray]' (or pyarrow)") from None
    return pyarrow, pyarrow.parquet


def _parquet_dicts(path: Path) -> list[dict[str, Any]]:
    pa, pq = pyarrow_modules()
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise MotionkitError(f"{path}: not a readable parquet manifest ({str(err).splitlines()[0]})") from None
    return table.to_pylist()


def _jsonl_dicts(path: Path, report: Callable[[int, str], None]) -> Iterable[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as err:
                report(number, str(err).splitlines()[0][:200])
                continue
            if not isinstance(data, dict):
                report(number, "not a JSON object")
                continue
            yield number, data


def read_rows(
    path: str | os.PathLike[str],
    *,
    resolve_paths: bool = True,
    on_error: Callable[[int, str], None] | None = None,
) -> list[ManifestRow]:
    """Every row of a manifest (parquet: kept and rejected; JSONL: its clips), in file order. A bad row
    is skipped and reported through ``on_error(row_number, reason)`` (default: a logged warning)."""
    path = Path(path)
    _require_file(path)
    report = on_error or (lambda n, reason: logger.warning("%s:%d: skipped bad manifest row (%s)", path, n, reason))
    items = enumerate(_parquet_dicts(path), start=1) if is_parquet(path) else _jsonl_dicts(path, report)
    rows: list[ManifestRow] = []
    for number, data in items:
        try:
            row = ManifestRow.from_dict(data)
        except (ValueError, TypeError, KeyError) as err:
            report(number, str(err).splitlines()[0][:200])
            continue
        if resolve_paths:
            row = replace(row, clip=replace(row.clip, path=resolve_clip_path(row.clip.path, path)))
        rows.append(row)
    return rows


def read_manifest(
    path: str | os.PathLike[str],
    *,
    resolve_paths: bool = True,
    on_error: Callable[[int, str], None] | None = None,
) -> list[Clip]:
    """The kept clips of a JSONL or parquet manifest, in file order. A bad line (torn write, hand edit)
    is skipped and reported through ``on_error(line_number, reason)`` (default: a logged warning), never
    fatal. With ``resolve_paths`` clip paths are made absolute against the manifest's folder."""
    return [row.clip for row in read_rows(path, resolve_paths=resolve_paths, on_error=on_error) if row.keep]


# --------------------------------------------------------------------------- writing


def parquet_schema() -> Any:
    pa, _ = pyarrow_modules()
    columns = [
        ("path", pa.string()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("fps", pa.float64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("motion_score", pa.float64()),
        ("caption", pa.string()),
        ("hash", pa.string()),
        ("captions", pa.list_(pa.string())),
        ("shard", pa.int64()),
        *[(f"filter_{name}", pa.bool_()) for name in FILTERS],
        ("keep", pa.bool_()),
    ]
    return pa.schema(columns)


def write_rows(rows: Sequence[ManifestRow], path: str | os.PathLike[str], *, kept_only: bool | None = None) -> Path:
    """Write ``rows`` atomically as parquet or JSONL (by suffix). Paths are written as they are in the
    rows. JSONL holds only kept clips unless ``kept_only=False``; parquet holds every row."""
    from motionkit.utils.atomic import atomic_path, atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_parquet(path):
        pa, pq = pyarrow_modules()
        selected = [r for r in rows if r.keep] if kept_only else list(rows)
        table = pa.Table.from_pylist([r.to_dict() for r in selected], schema=parquet_schema())
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return path
    selected = list(rows) if kept_only is False else [r for r in rows if r.keep]
    with atomic_write(path) as handle:
        for row in selected:
            handle.write((json.dumps(row.to_dict(), ensure_ascii=False) if kept_only is False else row.clip.to_json()) + "\n")
    return path


def rebase_rows(rows: Iterable[ManifestRow], manifest: str | os.PathLike[str]) -> list[ManifestRow]:
    """Rows with absolute paths -> paths relative to ``manifest``'s folder (where they will be written)."""
    return [replace(r, clip=replace(r.clip, path=manifest_string(r.clip.path, manifest))) for r in rows]

"""Video curation: split videos into shots, score and filter them, write a clip manifest.

Pipeline per video (after SVD's data curation, simplified to what runs without network weights):
scene cuts with PySceneDetect's ContentDetector -> per clip: duration, resolution, Farneback motion
score (too static / too fast), a 64-bit difference hash of the middle frame for near-duplicate removal
-> caption from a WebVid-style CSV or a sidecar ``.txt`` -> one JSON line per kept clip.

Robustness rules:
- An unreadable file is skipped with its reason; it never stops the run.
- Each finished video is appended to the manifest in one write followed by fsync, then recorded in the
  ``MANIFEST.done`` sidecar. A rerun skips recorded files, drops lines of a video whose record is
  missing (a crash between the two writes) and cuts a torn last line, so the manifest stays valid.
- Results are consumed in sorted input order whatever the worker count, so the manifest and the
  choice of which near-duplicate is kept are deterministic and a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from motionkit.errors import MotionkitError

logger = logging.getLogger(__name__)

__all__ = [
    "VIDEO_EXTENSIONS",
    "Clip",
    "CurateOptions",
    "CurateReport",
    "FileResult",
    "HashIndex",
    "analyze_video",
    "curate",
    "difference_hash",
    "discover_videos",
    "hamming",
    "in_shard",
    "load_captions_csv",
    "read_manifest",
]

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"})

# Motion scores are Farneback pixels at this short side, per 1/motion_fps seconds.
MOTION_SHORT_SIDE = 128

# Filter names, in the order they are applied and reported.
FILTERS = ("too_small", "too_short", "static", "too_fast", "duplicate")


@dataclass(frozen=True)
class Clip:
    """One manifest line. Frames ``[start_frame, end_frame)`` of ``path``; seconds are the same range.

    ``path`` is stored relative to the manifest's folder when possible, so a dataset folder can move
    together with its manifest; :func:`read_manifest` resolves it again.
    """

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
    def from_dict(cls, data: dict[str, Any]) -> Clip:
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
            hash=str(data["hash"]),
        )
        if clip.end_frame <= clip.start_frame or clip.start_frame < 0:
            raise ValueError(f"empty or negative frame range [{clip.start_frame}, {clip.end_frame})")
        return clip


@dataclass(frozen=True)
class CurateOptions:
    """Filter settings. They are stored in the ``.done`` sidecar so a resumed run cannot silently mix
    clips filtered with different settings."""

    min_duration: float = 1.0  # seconds
    min_size: int = 0  # shorter side, pixels
    min_motion: float | None = 0.5  # about 0.4% of the short side per 0.5 s: a still shot
    max_motion: float | None = None
    dedup_threshold: int | None = 4  # Hamming distance over 64 bits; None disables
    scene_threshold: float = 27.0  # ContentDetector's default
    min_scene_len: int = 15  # frames, ContentDetector's default
    motion_fps: float = 2.0  # SVD scores motion on frames 0.5 s apart
    motion_pairs: int = 4  # frame pairs per clip, spread over its length

    def __post_init__(self) -> None:
        if self.min_duration < 0 or self.min_size < 0:
            raise MotionkitError("--min-duration and --min-size must be >= 0")
        if self.min_motion is not None and self.max_motion is not None and self.min_motion > self.max_motion:
            raise MotionkitError(f"--min-motion {self.min_motion} is above --max-motion {self.max_motion}; swap them")
        if self.dedup_threshold is not None and not 0 <= self.dedup_threshold < 64:
            raise MotionkitError(f"--dedup-threshold must be in 0..63 (or -1 to disable), got {self.dedup_threshold}")
        if self.motion_fps <= 0 or self.motion_pairs < 1:
            raise MotionkitError("motion_fps must be > 0 and motion_pairs >= 1")


@dataclass
class FileResult:
    """What a worker returns for one video: clips that passed the per-clip filters (dedup and captions
    are applied later, in order, by the parent), per-filter removal counts, or the reason it was skipped."""

    path: str
    clips: list[Clip] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class CurateReport:
    files_total: int = 0  # videos in this shard
    files_done_before: int = 0  # skipped because a previous run finished them
    files_processed: int = 0
    clips_kept: int = 0
    removed: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    repaired_lines: int = 0  # manifest lines dropped on resume (torn or unrecorded)

    def summary(self) -> str:
        lines = [
            f"{self.files_processed} video(s) processed, {self.files_done_before} already done, "
            f"{self.clips_kept} clip(s) kept",
        ]
        labels = {
            "too_small": "below --min-size",
            "too_short": "shorter than --min-duration",
            "static": "below --min-motion (static)",
            "too_fast": "above --max-motion (too fast/shaky)",
            "duplicate": "near-duplicates (--dedup-threshold)",
        }
        for name in FILTERS:
            lines.append(f"  removed {self.removed.get(name, 0):>6} clip(s) {labels[name]}")
        if self.repaired_lines:
            lines.append(f"  dropped {self.repaired_lines} unfinished manifest line(s) from an interrupted run")
        lines.append(f"  skipped {len(self.skipped)} unreadable file(s)")
        lines.extend(f"    {path}: {reason}" for path, reason in self.skipped)
        return "\n".join(lines)


# --------------------------------------------------------------------------- hashing


def difference_hash(frame: np.ndarray) -> int:
    """64-bit difference hash (dHash) of an RGB uint8 frame: robust to rescaling and re-encoding, so
    re-uploads and copies of a shot land within a few bits of each other."""
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class HashIndex:
    """Near-duplicate lookup for 64-bit hashes within Hamming distance ``threshold``.

    The hash is cut into ``threshold + 1`` bands; two hashes within the threshold agree exactly on at
    least one band (pigeonhole), so only hashes sharing a band are compared: near-linear instead of
    quadratic over millions of clips.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        n = threshold + 1
        edges = [round(64 * i / n) for i in range(n + 1)]
        self._bands = [(lo, (1 << (hi - lo)) - 1) for lo, hi in zip(edges[:-1], edges[1:])]
        self._tables: list[dict[int, list[int]]] = [{} for _ in self._bands]

    def find(self, value: int) -> int | None:
        """A stored hash within the threshold of ``value``, or None."""
        for (shift, mask), table in zip(self._bands, self._tables):
            for other in table.get((value >> shift) & mask, ()):
                if hamming(value, other) <= self.threshold:
                    return other
        return None

    def add(self, value: int) -> None:
        for (shift, mask), table in zip(self._bands, self._tables):
            table.setdefault((value >> shift) & mask, []).append(value)


# --------------------------------------------------------------------------- per-video analysis


def _detect_scenes(path: str, options: CurateOptions) -> list[tuple[int, int]]:
    """Shots as ``[start, end)`` frame ranges covering every decoded frame."""
    from scenedetect import ContentDetector, SceneManager, open_video

    video = open_video(path, backend="pyav")
    manager = SceneManager()  # auto-downscales large frames before scoring
    manager.add_detector(ContentDetector(threshold=options.scene_threshold, min_scene_len=options.min_scene_len))
    manager.detect_scenes(video)
    scenes = manager.get_scene_list(start_in_scene=True)
    return [(start.frame_num, end.frame_num) for start, end in scenes if end.frame_num > start.frame_num]


def _motion_plan(start: int, end: int, fps: float, options: CurateOptions) -> list[tuple[int, int]]:
    """Frame pairs ``1 / motion_fps`` seconds apart, spread over the clip, so scores of short and long
    clips (and of 24 and 60 fps sources) measure motion over the same time step."""
    gap = max(1, round(fps / options.motion_fps))
    gap = min(gap, end - start - 1)
    if gap < 1:
        return []
    last_first = end - 1 - gap
    firsts = np.linspace(start, last_first, options.motion_pairs).round().astype(int)
    return [(int(a), int(a) + gap) for a in sorted(set(firsts.tolist()))]


def analyze_video(path: str, options: CurateOptions, manifest_path: str = "") -> FileResult:
    """Split one video into clips and apply the per-clip filters. Never raises for a bad file: the
    reason comes back in ``FileResult.error``. ``manifest_path`` is the path string written to the
    manifest (defaults to ``path``)."""
    result = FileResult(path=manifest_path or path)
    try:
        _analyze(path, options, result)
    except MotionkitError as err:
        # Messages start with the path; the report already names the file.
        result.clips, result.removed, result.error = [], {}, str(err).removeprefix(f"{path}: ")
    except Exception as err:  # noqa: BLE001 - one odd file (decoder, container, codec bug) must not stop a long run
        reason = str(err).splitlines()[0] if str(err) else ""
        result.clips, result.removed, result.error = [], {}, f"{type(err).__name__}: {reason}".rstrip(": ")
    return result


def _analyze(path: str, options: CurateOptions, result: FileResult) -> None:
    from motionkit.data.decode import decode_clip
    from motionkit.metrics import motion_score
    from motionkit.video_io import probe_video

    removed: Counter = Counter()
    info = probe_video(path)
    if not info.fps:
        result.error = "no frame rate in the file"
        return
    fps = float(info.fps)
    if min(info.width, info.height) < options.min_size:
        removed["too_small"] += 1  # the whole video counts as one clip: no need to split it
        result.removed = dict(removed)
        return
    scenes = _detect_scenes(path, options)
    if not scenes:
        result.error = "no frames could be decoded"
        return
    for start, end in scenes:
        if (end - start) / fps < options.min_duration:
            removed["too_short"] += 1
            continue
        pairs = _motion_plan(start, end, fps, options)
        middle = (start + end - 1) // 2
        wanted = sorted({i for pair in pairs for i in pair} | {middle})
        # Every video is scaled to the same short side so scores share one unit across the dataset.
        frames = decode_clip(path, wanted, short_side=MOTION_SHORT_SIDE)
        by_index = dict(zip(wanted, frames))
        if pairs:
            score = float(np.mean([motion_score(np.stack([by_index[a], by_index[b]])) for a, b in pairs]))
        else:
            score = 0.0
        if options.min_motion is not None and score < options.min_motion:
            removed["static"] += 1
            continue
        if options.max_motion is not None and score > options.max_motion:
            removed["too_fast"] += 1
            continue
        result.clips.append(
            Clip(
                path=result.path,
                start_frame=start,
                end_frame=end,
                start_s=round(start / fps, 6),
                end_s=round(end / fps, 6),
                fps=fps,
                width=info.width,
                height=info.height,
                motion_score=round(score, 6),
                caption="",
                hash=f"{difference_hash(by_index[middle]):016x}",
            )
        )
    result.removed = dict(removed)


# --------------------------------------------------------------------------- inputs, shards, captions


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


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether ``key`` belongs to shard ``(index, count)``: a stable hash, so adding videos does not move
    existing ones to another shard."""
    if shard is None:
        return True
    index, count = shard
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % count == index


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


def load_captions_csv(path: str | os.PathLike[str]) -> dict[str, str]:
    """WebVid-style CSV -> ``{videoid: caption}``; the caption column is ``name`` (WebVid) or ``caption``."""
    path = Path(path)
    if path.is_dir():
        raise MotionkitError(f"{path} is a folder: give the captions CSV file itself")
    if not path.is_file():
        raise MotionkitError(f"captions file {path} does not exist: give the path of a CSV with videoid and name columns")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = set(reader.fieldnames or [])
            text_column = "name" if "name" in columns else "caption" if "caption" in columns else None
            if "videoid" not in columns or text_column is None:
                raise MotionkitError(
                    f"{path}: caption CSV needs a 'videoid' column and a 'name' or 'caption' column;"
                    f" found {sorted(columns)[:10]}"
                )
            return {str(row["videoid"]).strip(): (row[text_column] or "").strip() for row in reader}
    except (UnicodeDecodeError, csv.Error) as err:
        reason = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else f"not valid CSV ({err})"
        raise MotionkitError(f"{path} is {reason}: give a UTF-8 CSV file with videoid and name columns") from None


def sidecar_caption(video: Path) -> str | None:
    """Caption from ``clip.txt`` (or ``clip.mp4.txt``) next to ``clip.mp4``, if present."""
    for candidate in (video.with_suffix(".txt"), video.with_name(video.name + ".txt")):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8", errors="replace").strip()
    return None


def caption_for(video: Path, csv_captions: dict[str, str] | None) -> str:
    """The CSV entry (matched on the file stem) wins, then a sidecar; no caption is the empty prompt."""
    if csv_captions is not None and video.stem in csv_captions:
        return csv_captions[video.stem]
    return sidecar_caption(video) or ""


# --------------------------------------------------------------------------- manifest


def _manifest_string(video: Path, manifest: Path) -> str:
    try:
        return Path(os.path.relpath(video, manifest.resolve().parent)).as_posix()
    except ValueError:  # another drive on Windows
        return video.as_posix()


def resolve_clip_path(clip_path: str, manifest: str | os.PathLike[str]) -> str:
    path = Path(clip_path)
    return str(path if path.is_absolute() else Path(manifest).resolve().parent / path)


def read_manifest(
    path: str | os.PathLike[str],
    *,
    resolve_paths: bool = True,
    on_error: Callable[[int, str], None] | None = None,
) -> list[Clip]:
    """Clips of a JSONL manifest, in file order. A bad line (torn write, hand edit) is skipped and
    reported through ``on_error(line_number, reason)`` (default: a logged warning), never fatal.
    With ``resolve_paths`` clip paths are made absolute against the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise MotionkitError(f"{path}: manifest not found; create it with 'motionkit curate VIDEOS --out {path.name}'")
    report = on_error or (lambda n, reason: logger.warning("%s:%d: skipped bad manifest line (%s)", path, n, reason))
    clips: list[Clip] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                clip = Clip.from_dict(data)
            except (ValueError, TypeError, KeyError) as err:
                report(number, str(err).splitlines()[0][:200])
                continue
            if resolve_paths:
                clip = Clip(**{**asdict(clip), "path": resolve_clip_path(clip.path, path)})
            clips.append(clip)
    return clips


def _done_path(manifest: Path) -> Path:
    return manifest.with_name(manifest.name + ".done")


def _append_durably(path: Path, text: str) -> None:
    """One write of whole lines, flushed to disk before returning, so a crash leaves either all of
    them or a torn tail that the next run cuts off."""
    if not text:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _load_state(manifest: Path, options: CurateOptions, report: CurateReport) -> tuple[set[str], list[Clip]]:
    """Files finished by earlier runs and their kept clips; repairs the manifest after a crash."""
    from motionkit.utils.atomic import atomic_write

    done_file = _done_path(manifest)
    done: set[str] = set()
    options_json = asdict(options)
    if done_file.is_file():
        lines = done_file.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except ValueError:
                continue  # torn last record: that file is simply done again
            if "options" in record:
                if record["options"] != options_json:
                    changed = sorted(k for k in options_json if record["options"].get(k) != options_json[k])
                    raise MotionkitError(
                        f"{manifest}: was curated with different settings ({', '.join(changed)}); "
                        "use the same options to resume, or a new --out"
                    )
            elif "path" in record:
                done.add(record["path"])
    elif manifest.exists() and manifest.stat().st_size > 0:
        raise MotionkitError(
            f"{manifest}: exists but has no {done_file.name} record of finished files; pick a new --out or delete it"
        )
    if not manifest.exists():
        return done, []

    good_lines: list[str] = []
    clips: list[Clip] = []
    dropped = 0
    raw = manifest.read_text(encoding="utf-8")
    for line in raw.splitlines(keepends=True):
        try:
            clip = Clip.from_dict(json.loads(line)) if line.endswith("\n") else None
        except (ValueError, TypeError):
            clip = None
        if clip is None or clip.path not in done:
            dropped += line.strip() != ""
            continue
        good_lines.append(line)
        clips.append(clip)
    if dropped:
        with atomic_write(manifest) as handle:
            handle.write("".join(good_lines))
    report.repaired_lines = dropped
    return done, clips


# --------------------------------------------------------------------------- the run


def _ordered_results(
    jobs: list[tuple[str, str]], options: CurateOptions, workers: int
) -> Iterable[FileResult]:
    """Analyse ``(video, manifest_string)`` jobs, yielding results in job order.

    At most ``4 * workers`` jobs are in flight, which bounds memory; a slow video holds back the
    output (not the workers) until it is done.
    """
    if workers <= 1:
        for video, name in jobs:
            yield analyze_video(video, options, name)
        return
    pending = iter(jobs)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        window: deque[tuple[tuple[str, str], Future[FileResult]]] = deque()

        def submit() -> None:
            job = next(pending, None)
            if job is not None:
                window.append((job, pool.submit(analyze_video, job[0], options, job[1])))

        for _ in range(4 * workers):
            submit()
        while window:
            job, future = window.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                raise MotionkitError(
                    f"a worker process died (decoder crash?) around {job[0]}; rerun the same command to resume,"
                    " finished files are kept"
                ) from None
            submit()
            yield result


def curate(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    options: CurateOptions | None = None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    captions_csv: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> CurateReport:
    """Curate the videos under ``inputs`` into the JSONL manifest ``out`` (resuming if it exists).

    ``shard=(i, n)`` keeps the videos whose key hashes to ``i`` modulo ``n``; the manifests of all
    shards concatenate to the clips of an unsharded run, except that near-duplicates are only removed
    within a shard.
    """
    from tqdm import tqdm

    options = options or CurateOptions()
    if workers < 1:
        raise MotionkitError(f"--workers must be >= 1, got {workers}")
    manifest = Path(out)
    if manifest.is_dir():
        raise MotionkitError(f"{manifest}: is a folder; --out takes a .jsonl file path")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    csv_captions = load_captions_csv(captions_csv) if captions_csv is not None else None

    report = CurateReport()
    videos = [(key, path) for key, path in discover_videos(inputs) if in_shard(key, shard)]
    report.files_total = len(videos)
    done, previous = _load_state(manifest, options, report)
    index = HashIndex(options.dedup_threshold) if options.dedup_threshold is not None else None
    if index is not None:
        for clip in previous:
            index.add(int(clip.hash, 16))

    done_file = _done_path(manifest)
    if not done_file.exists():
        _append_durably(done_file, json.dumps({"options": asdict(options)}) + "\n")
    manifest.touch()

    jobs = []
    for _key, video in videos:
        name = _manifest_string(video, manifest)
        if name in done:
            report.files_done_before += 1
        else:
            jobs.append((str(video), name))
    video_of = {name: Path(video) for video, name in jobs}

    with tqdm(total=len(jobs), unit="video", desc="curate", disable=not progress, dynamic_ncols=True) as bar:
        for result in _ordered_results(jobs, options, workers):
            kept: list[Clip] = []
            removed = Counter(result.removed)
            if result.error is None:
                caption = caption_for(video_of[result.path], csv_captions)
                for clip in result.clips:
                    value = int(clip.hash, 16)
                    if index is not None and index.find(value) is not None:
                        removed["duplicate"] += 1
                        continue
                    if index is not None:
                        index.add(value)
                    kept.append(Clip(**{**asdict(clip), "caption": caption}))
            else:
                report.skipped.append((str(video_of[result.path]), result.error))
            # Clips first, then the record: a crash in between is repaired on resume (see _load_state).
            _append_durably(manifest, "".join(clip.to_json() + "\n" for clip in kept))
            record = {"path": result.path, "clips": len(kept), "removed": dict(removed), "error": result.error}
            _append_durably(done_file, json.dumps(record) + "\n")
            report.files_processed += 1
            report.clips_kept += len(kept)
            report.removed.update(removed)
            bar.update(1)
    return report


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))


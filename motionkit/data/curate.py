"""Video curation: split videos into shots, score and filter them, write a clip manifest.

Pipeline per video (after SVD's data curation, simplified to what runs without network weights):
scene cuts with PySceneDetect's ContentDetector -> per clip: duration, resolution, Farneback motion
score (too static / too fast), a 64-bit difference hash of the middle frame for near-duplicate removal
-> caption from a caption source (WebVid, OpenVid-1M, Panda-70M CSV, video2dataset folder) or a sidecar
``.txt`` -> one manifest row per clip.

The per-video analysis lives in :mod:`motionkit.data.analysis` and runs on an engine
(:mod:`motionkit.data.engines`: local processes or Ray Data); this module does what must happen in one
place, in input order: near-duplicates, captions and the durable manifest writes.

Outputs: ``.jsonl`` holds the kept clips; ``.parquet`` holds every shot with each filter's verdict
(see :mod:`motionkit.data.manifest`), journaled to ``<out>.rows.jsonl`` while the run goes and
written as parquet at the end.

Robustness rules:
- An unreadable file is skipped with its reason; it never stops the run.
- Each finished video is appended to the manifest (or the journal) in one write followed by fsync,
  then recorded in the ``MANIFEST.done`` sidecar. A rerun skips recorded files, drops lines of a video
  whose record is missing (a crash between the two writes) and cuts a torn last line.
- Results are consumed in sorted input order whatever the engine and worker count, so the manifest and
  the choice of which near-duplicate is kept are deterministic and a resumed run equals an
  uninterrupted one.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from motionkit.data.analysis import (
    MOTION_SHORT_SIDE,
    CurateOptions,
    FileResult,
    HashIndex,
    analyze_video,
    difference_hash,
    hamming,
)
from motionkit.data.engines import ENGINES
from motionkit.data.engines.local import default_workers, local_results
from motionkit.data.manifest import (
    FILTERS,
    Clip,
    ManifestRow,
    is_parquet,
    manifest_string,
    read_manifest,
    read_rows,
    resolve_clip_path,
    write_rows,
)
from motionkit.data.sources import (
    VIDEO_EXTENSIONS,
    Captions,
    caption_for,
    discover_videos,
    in_shard,
    load_captions,
    load_captions_csv,
    parse_shard,
    sidecar_caption,
)
from motionkit.errors import MotionkitError

__all__ = [
    "MOTION_SHORT_SIDE",
    "VIDEO_EXTENSIONS",
    "Clip",
    "CurateOptions",
    "CurateReport",
    "FileResult",
    "HashIndex",
    "ManifestRow",
    "analyze_video",
    "curate",
    "default_workers",
    "difference_hash",
    "discover_videos",
    "hamming",
    "in_shard",
    "load_captions",
    "load_captions_csv",
    "parse_shard",
    "read_manifest",
    "read_rows",
    "resolve_clip_path",
    "sidecar_caption",
]


@dataclass
class CurateReport:
    files_total: int = 0  # videos in this shard
    files_done_before: int = 0  # skipped because a previous run finished them
    files_processed: int = 0  # analysed in this run, skipped ones included
    clips_kept: int = 0
    removed: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    repaired_lines: int = 0  # manifest lines dropped on resume (torn or unrecorded)

    def summary(self) -> str:
        lines = [
            f"{self.files_processed - len(self.skipped)} video(s) processed, {self.files_done_before} already done, "
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


# --------------------------------------------------------------------------- durable state


def _done_path(manifest: Path) -> Path:
    return manifest.with_name(manifest.name + ".done")


def _journal_path(manifest: Path) -> Path:
    """Where rows go while the run goes: the JSONL manifest itself, or the parquet manifest's journal."""
    return manifest.with_name(manifest.name + ".rows.jsonl") if is_parquet(manifest) else manifest


def _append_durably(path: Path, text: str) -> None:
    """One write of whole lines, flushed to disk before returning, so a crash leaves either all of
    them or a torn tail that the next run cuts off."""
    if not text:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _load_state(manifest: Path, options: CurateOptions, report: CurateReport) -> tuple[set[str], list[ManifestRow]]:
    """Files finished by earlier runs and their rows; repairs the journal after a crash."""
    from motionkit.utils.atomic import atomic_write

    done_file = _done_path(manifest)
    journal = _journal_path(manifest)
    done: set[str] = set()
    options_json = asdict(options)
    if done_file.is_file():
        for line in done_file.read_text(encoding="utf-8").splitlines():
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
    elif journal.exists() and journal.stat().st_size > 0 or manifest.exists() and manifest.stat().st_size > 0:
        raise MotionkitError(
            f"{manifest}: exists but has no {done_file.name} record of finished files; pick a new --out or delete it"
        )
    if not journal.exists():
        return done, []

    good_lines: list[str] = []
    rows: list[ManifestRow] = []
    dropped = 0
    for line in journal.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            row = ManifestRow.from_dict(json.loads(line)) if line.endswith("\n") else None
        except (ValueError, TypeError, KeyError):
            row = None
        if row is None or row.clip.path not in done:
            dropped += line.strip() != ""
            continue
        good_lines.append(line)
        rows.append(row)
    if dropped:
        with atomic_write(journal) as handle:
            handle.write("".join(good_lines))
    report.repaired_lines = dropped
    return done, rows


# --------------------------------------------------------------------------- the run


def _engine_results(
    engine: str, jobs: list[tuple[str, str]], options: CurateOptions, workers: int, ray_address: str | None
) -> Iterable[FileResult]:
    if engine == "local":
        # analyze_video is looked up here, at call time, so it can be swapped (tests simulate crashes).
        return local_results(jobs, options, workers, analyze=analyze_video)
    from motionkit.data.engines.ray import ray_results

    return ray_results(jobs, options, address=ray_address, num_cpus=None if ray_address else workers)


def curate(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    options: CurateOptions | None = None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    captions_csv: str | os.PathLike[str] | None = None,
    progress: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
) -> CurateReport:
    """Curate the videos under ``inputs`` into the manifest ``out`` (``.jsonl`` or ``.parquet``),
    resuming if it exists.

    ``engine``: ``local`` (``workers`` processes on this machine) or ``ray`` (a Ray Data pipeline on
    ``workers`` CPUs of this machine, or on the cluster at ``ray_address``); both write the same rows.
    ``shard=(i, n)`` keeps the videos whose key hashes to ``i`` modulo ``n``; the manifests of all
    shards concatenate to the clips of an unsharded run, except that near-duplicates are only removed
    within a shard (``motionkit manifest merge`` removes them across shards).
    ``captions_csv``: a WebVid / OpenVid-1M / Panda-70M CSV or a video2dataset output folder.
    """
    from tqdm import tqdm

    options = options or CurateOptions()
    if workers < 1:
        raise MotionkitError(f"--workers must be >= 1, got {workers}")
    if engine not in ENGINES:
        raise MotionkitError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    manifest = Path(out)
    if manifest.is_dir():
        raise MotionkitError(f"{manifest}: is a folder; --out takes a .jsonl or .parquet file path")
    if is_parquet(manifest):
        from motionkit.data.manifest import pyarrow_modules

        pyarrow_modules()  # fail before any work when pyarrow is missing
    manifest.parent.mkdir(parents=True, exist_ok=True)
    captions: Captions | None = load_captions(captions_csv) if captions_csv is not None else None

    report = CurateReport()
    videos = [(key, path) for key, path in discover_videos(inputs) if in_shard(key, shard)]
    report.files_total = len(videos)
    done, previous = _load_state(manifest, options, report)
    index = HashIndex(options.dedup_threshold) if options.dedup_threshold is not None else None
    if index is not None:
        for row in previous:
            if row.keep:
                index.add(int(row.clip.hash, 16))

    done_file = _done_path(manifest)
    journal = _journal_path(manifest)
    if not done_file.exists():
        _append_durably(done_file, json.dumps({"options": asdict(options)}) + "\n")
    journal.touch()

    jobs = []
    for _key, video in videos:
        name = manifest_string(video, manifest)
        if name in done:
            report.files_done_before += 1
        else:
            jobs.append((str(video), name))
    video_of = {name: Path(video) for video, name in jobs}
    shard_id = shard[0] if shard is not None else -1
    all_rows = list(previous)

    with tqdm(total=len(jobs), unit="video", desc="curate", disable=not progress, dynamic_ncols=True) as bar:
        for result in _engine_results(engine, jobs, options, workers, ray_address):
            rows = _finish_rows(result, video_of[result.path], captions, index, shard_id)
            if result.error is not None:
                report.skipped.append((str(video_of[result.path]), result.error))
            kept = [row for row in rows if row.keep]
            removed = Counter(result.removed)
            removed["duplicate"] += sum(1 for row in rows if row.verdicts.get("duplicate"))
            removed = +removed
            # Rows first, then the record: a crash in between is repaired on resume (see _load_state).
            if journal == manifest:
                text = "".join(row.clip.to_json() + "\n" for row in kept)
            else:
                text = "".join(json.dumps(row.to_dict(), ensure_ascii=False) + "\n" for row in rows)
                all_rows.extend(rows)
            _append_durably(journal, text)
            record = {"path": result.path, "clips": len(kept), "removed": dict(removed), "error": result.error}
            _append_durably(done_file, json.dumps(record) + "\n")
            report.files_processed += 1
            report.clips_kept += len(kept)
            report.removed.update(removed)
            bar.update(1)
    if journal != manifest:
        write_rows(all_rows, manifest)
    return report


def _finish_rows(
    result: FileResult, video: Path, captions: Captions | None, index: HashIndex | None, shard_id: int
) -> list[ManifestRow]:
    """Captions and the duplicate verdict (against every clip kept so far), in input order."""
    rows = []
    for clip, verdicts in result.rows:
        verdicts = dict(verdicts)
        caption, all_captions = caption_for(video, captions, clip.start_s, clip.end_s)
        passed = not any(verdicts.values())
        if passed and index is not None:
            value = int(clip.hash, 16)
            verdicts["duplicate"] = index.find(value) is not None
            if not verdicts["duplicate"]:
                index.add(value)
        else:
            verdicts["duplicate"] = False if passed else None
        rows.append(ManifestRow(replace(clip, caption=caption), verdicts, all_captions, shard_id))
    return rows

"""Curation past one machine: the Ray engine against the local one, parquet manifests with verdicts,
merging shards with cross-shard dedup, filters on parquet, caption sources, undecodable headers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from motionkit.cli import main
from motionkit.data.curate import CurateOptions, curate, read_manifest, read_rows
from motionkit.data.manifest import ManifestRow
from motionkit.data.refilter import filter_manifest, merge_manifests
from motionkit.data.sources import load_captions
from motionkit.data.synthetic import moving_pattern, static_pattern
from motionkit.video_io import write_video

FPS = 12
HUGE_HEADER = b"YUV4MPEG2 W16000 H16000 F12:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x80" * 5000


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cut.mp4 (two shots), move.mp4 and its copy zcopy.mp4, static.mp4, garbage and a lying header."""
    root = tmp_path_factory.mktemp("videos")
    cut = np.concatenate([moving_pattern(30, hue=0, seed=1), moving_pattern(30, hue=2, seed=2)])
    write_video(cut, root / "cut.mp4", fps=FPS)
    write_video(moving_pattern(30, hue=1, seed=5), root / "move.mp4", fps=FPS)
    shutil.copy(root / "move.mp4", root / "zcopy.mp4")
    write_video(static_pattern(36), root / "static.mp4", fps=FPS)
    (root / "garbage.mp4").write_bytes(b"not a video at all" * 64)
    (root / "huge.mp4").write_bytes(HUGE_HEADER)
    return root


@pytest.fixture(scope="module")
def full_parquet(library: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full") / "m.parquet"
    curate([library], out, progress=False)
    return out


def _row_dicts(path: Path) -> list[dict]:
    return sorted((r.to_dict() for r in read_rows(path)), key=lambda d: (d["path"], d["start_frame"]))


def test_a_header_that_promises_undecodable_frames_is_skipped_with_its_reason(library: Path, tmp_path: Path) -> None:
    report = curate([library / "huge.mp4", library / "move.mp4"], tmp_path / "m.jsonl", progress=False)
    assert report.skipped == [(str(library / "huge.mp4"), "no frame could be decoded (the header says 16000x16000 rawvideo)")]
    assert report.clips_kept == 1 and report.removed == {}
    assert report.summary().startswith("1 video(s) processed")


def test_parquet_manifest_keeps_every_shot_with_its_verdicts(library: Path, full_parquet: Path, tmp_path: Path) -> None:
    jsonl = tmp_path / "m.jsonl"
    curate([library], jsonl, progress=False)
    rows = read_rows(full_parquet)
    by_name = {}
    for row in rows:
        by_name.setdefault(Path(row.clip.path).name, []).append(row)
    assert by_name["static.mp4"][0].verdicts == {
        "too_small": False, "too_short": False, "static": True, "too_fast": False, "duplicate": None
    }
    assert by_name["zcopy.mp4"][0].verdicts["duplicate"] is True and by_name["move.mp4"][0].keep
    assert all(row.shard == -1 for row in rows)
    # The kept rows of the parquet manifest are exactly the JSONL manifest.
    assert read_manifest(full_parquet) == read_manifest(jsonl)
    assert len(rows) == 5 and len(read_manifest(jsonl)) == 3


def test_ray_engine_writes_the_same_manifest_as_the_local_engine(library: Path, full_parquet: Path, tmp_path: Path) -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        out = tmp_path / "ray.parquet"
        report = curate([library], out, progress=False, engine="ray")
        jsonl = tmp_path / "ray.jsonl"
        curate([library], jsonl, progress=False, engine="ray")
    finally:
        ray.shutdown()
    assert _row_dicts(out) == _row_dicts(full_parquet)
    local_jsonl = tmp_path / "local.jsonl"
    curate([library], local_jsonl, progress=False, workers=2)
    assert jsonl.read_bytes() == local_jsonl.read_bytes()
    assert sorted(Path(p).name for p, _ in report.skipped) == ["garbage.mp4", "huge.mp4"]


def test_merging_parquet_shards_equals_one_unsharded_run(library: Path, full_parquet: Path, tmp_path: Path) -> None:
    parts = []
    for index in range(3):
        part = tmp_path / f"part{index}.parquet"
        assert main(["curate", str(library), "--out", str(part), "--shard", f"{index}/3", "--no-progress"]) == 0
        parts.append(part)
    shard_rows = [read_rows(p) for p in parts]
    assert all(shard_rows) and [{r.shard for r in rows} for rows in shard_rows] == [{0}, {1}, {2}]
    # move and its copy land in different shards (1 and 0): each shard alone keeps its one.
    names = [{Path(r.clip.path).name for r in rows if r.keep} for rows in shard_rows]
    assert "zcopy.mp4" in names[0] and "move.mp4" in names[1]
    merged = tmp_path / "merged.parquet"
    assert main(["manifest", "merge", *map(str, parts), "--out", str(merged)]) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k != "shard"} for r in rows]  # noqa: E731
    assert strip(_row_dicts(merged)) == strip(_row_dicts(full_parquet))
    # JSONL shards (survivors only) merge too, into the same kept clips here.
    jsonl_parts = []
    for index in range(3):
        part = tmp_path / f"part{index}.jsonl"
        curate([library], part, shard=(index, 3), progress=False)
        jsonl_parts.append(part)
    report = merge_manifests(jsonl_parts, tmp_path / "merged.jsonl")
    assert report.removed["duplicate"] == 1
    assert read_manifest(tmp_path / "merged.jsonl") == read_manifest(full_parquet)


def test_filters_rerun_on_parquet_equal_a_fresh_curation(library: Path, full_parquet: Path, tmp_path: Path) -> None:
    options = CurateOptions(min_motion=None, min_duration=2.6, dedup_threshold=None)
    filtered = tmp_path / "filtered.parquet"
    report = filter_manifest(full_parquet, filtered, options)
    fresh = tmp_path / "fresh.parquet"
    curate([library], fresh, options=options, progress=False)
    assert _row_dicts(filtered) == _row_dicts(fresh)
    assert report.kept == 1 and report.removed["too_short"] == 4  # only the 3 s static video is long enough
    assert main(["manifest", "filter", str(full_parquet), "--out", str(tmp_path / "f.jsonl"), "--min-motion", "-1"]) == 0
    names = sorted(Path(c.path).name for c in read_manifest(tmp_path / "f.jsonl"))
    assert names == ["cut.mp4", "cut.mp4", "move.mp4", "static.mp4"]


def test_caption_sources_webvid_openvid_panda_and_video2dataset(library: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    webvid = tmp_path / "webvid.csv"
    webvid.write_text("videoid,contentUrl,duration,page_dir,name\ncut,http://x/cut.mp4,PT00H00M05S,p1,a cut\n")
    openvid = tmp_path / "openvid.csv"
    openvid.write_text("video,caption,aesthetic score,motion score,temporal consistency score,camera motion,frame,fps,seconds\n"
                       "move.mp4,a moving texture,5.1,3.2,0.98,pan_right,30,12,2.5\n")
    panda = tmp_path / "panda.csv"
    panda.write_text(
        'videoID,url,timestamp,caption,matching_score\n'
        'cut,https://youtu.be/cut,"[[\'0:00:00.000\', \'0:00:02.400\'], [\'0:00:02.400\', \'0:00:05.000\']]",'
        '"[\'first shot\', \'second shot\']","[0.5, 0.6]"\n'
    )
    v2d = tmp_path / "v2d"
    v2d.mkdir()
    pq.write_table(pa.table({"key": ["move", "cut"], "status": ["success", "failed_to_download"],
                             "error_message": [None, "404"], "url": ["u1", "u2"], "caption": ["from v2d", "lost"]}),
                   v2d / "00000.parquet")
    assert load_captions(webvid).whole == {"cut": "a cut"}
    assert load_captions(openvid).whole == {"move": "a moving texture"}
    assert load_captions(v2d).whole == {"move": "from v2d"}

    out = tmp_path / "panda.parquet"
    curate([library / "cut.mp4"], out, progress=False, captions_csv=panda)
    rows = read_rows(out)
    # Shots [0, 2.5) and [2.5, 5) s: each takes the Panda clip it overlaps most; every overlapping one is kept.
    assert [(r.clip.caption, r.captions) for r in rows] == [
        ("first shot", ("first shot", "second shot")), ("second shot", ("second shot",))
    ]
    curate([library / "move.mp4"], tmp_path / "v.jsonl", progress=False, captions_csv=v2d)
    assert [c.caption for c in read_manifest(tmp_path / "v.jsonl")] == ["from v2d"]


def test_manifest_rows_round_trip_and_bad_parquet_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    row = ManifestRow.from_dict({
        "path": "a.mp4", "start_frame": 0, "end_frame": 24, "start_s": 0.0, "end_s": 2.0, "fps": 12.0,
        "width": 64, "height": 48, "motion_score": 1.5, "caption": "hi", "hash": "00ff00ff00ff00ff",
    })
    assert row.keep and row.captions == ("hi",) and row.verdicts == {}  # a JSONL line records no verdicts
    again = ManifestRow.from_dict(json.loads(json.dumps(row.to_dict())))
    assert again.clip == row.clip and again.keep and ManifestRow.from_dict(again.to_dict()) == again
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    assert main(["manifest", "merge", str(bad), "--out", str(tmp_path / "m.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable parquet manifest" in err[0]

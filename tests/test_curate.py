"""Curation on small synthetic videos: scene cuts, filters, captions, corrupt files, resume, shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from motionkit.cli import main
from motionkit.data import curate as curate_mod
from motionkit.data.curate import Clip, CurateOptions, HashIndex, curate, read_manifest
from motionkit.data.decode import closest_bucket, decode_clip, indices_by_fps, indices_by_stride
from motionkit.data.synthetic import moving_pattern, static_pattern
from motionkit.errors import MotionkitError
from motionkit.video_io import write_video

FPS = 12


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cut.mp4 (two shots), sub/move.mp4 and its copy, sub/static.mp4, and two broken files."""
    root = tmp_path_factory.mktemp("videos")
    (root / "sub").mkdir()
    cut = np.concatenate([moving_pattern(30, hue=0, seed=1), moving_pattern(30, hue=2, seed=2)])
    write_video(cut, root / "cut.mp4", fps=FPS)
    write_video(moving_pattern(30, hue=1, seed=5), root / "sub" / "move.mp4", fps=FPS)
    shutil.copy(root / "sub" / "move.mp4", root / "sub" / "zcopy.mp4")
    write_video(static_pattern(36), root / "sub" / "static.mp4", fps=FPS)
    (root / "garbage.mp4").write_bytes(b"not a video at all" * 64)
    data = (root / "cut.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "cut.txt").write_text("two shots\n", encoding="utf-8")
    (root / "notes.md").write_text("not a video", encoding="utf-8")
    return root


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_curate_cli_end_to_end(library: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "m.jsonl"
    assert main(["curate", str(library), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    summary = capsys.readouterr().out
    rows = _lines(out)
    by_file: dict[str, list[dict]] = {}
    for row in rows:
        by_file.setdefault(Path(row["path"]).name, []).append(row)
    # The hard cut splits cut.mp4 in two at frame 30; the static video and the copy are filtered.
    assert [(r["start_frame"], r["end_frame"]) for r in by_file["cut.mp4"]] == [(0, 30), (30, 60)]
    assert by_file["cut.mp4"][1]["start_s"] == pytest.approx(2.5)
    assert set(by_file) == {"cut.mp4", "move.mp4"}
    assert all(r["caption"] == "two shots" for r in by_file["cut.mp4"])
    assert by_file["move.mp4"][0]["caption"] == ""
    assert all(r["motion_score"] > 0.5 and len(r["hash"]) == 16 for r in rows)
    assert {"width": 64, "height": 48, "fps": 12.0} == {k: rows[0][k] for k in ("width", "height", "fps")}
    # The summary names every filter and each skipped file with its reason; the run was not stopped.
    assert "1 clip(s) below --min-motion" in summary
    assert "1 clip(s) near-duplicates" in summary
    assert "skipped 2 unreadable file(s)" in summary
    assert "garbage.mp4:" in summary and "truncated.mp4:" in summary
    # read_manifest resolves paths against the manifest folder.
    clips = read_manifest(out)
    assert len(clips) == 3 and all(Path(c.path).is_file() for c in clips)
    assert clips[0].num_frames == 30


def test_resume_processes_nothing_new_and_keeps_manifest(library: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    first = curate([library], out, workers=1, progress=False)
    before = out.read_bytes()
    second = curate([library], out, workers=1, progress=False)
    assert first.files_processed == 6 and second.files_processed == 0
    assert second.files_done_before == 6
    assert out.read_bytes() == before
    with pytest.raises(MotionkitError, match="different settings"):
        curate([library], out, options=CurateOptions(min_motion=3.0), progress=False)


def test_interrupted_run_keeps_finished_files_and_dedups_across_resume(
    library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = tmp_path / "full.jsonl"
    curate([library], full, workers=1, progress=False)

    out = tmp_path / "m.jsonl"
    real = curate_mod.analyze_video
    calls = []

    def crash_on_fourth(path: str, options: CurateOptions, name: str = "") -> curate_mod.FileResult:
        calls.append(path)
        if len(calls) == 4:  # files in order: cut, garbage, sub/move, sub/static, sub/zcopy, truncated
            raise KeyboardInterrupt
        return real(path, options, name)

    monkeypatch.setattr(curate_mod, "analyze_video", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        curate([library], out, workers=1, progress=False)
    kept = _lines(out)
    assert [Path(r["path"]).name for r in kept] == ["cut.mp4", "cut.mp4", "move.mp4"]

    # A torn write (crash inside an append) plus lines of a file never recorded as done.
    with open(out, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({**kept[0], "path": "elsewhere.mp4"}) + "\n" + '{"path": "half')
    monkeypatch.setattr(curate_mod, "analyze_video", real)
    report = curate([library], out, workers=1, progress=False)
    assert report.repaired_lines == 2 and report.files_done_before == 3
    # zcopy.mp4 duplicates move.mp4 from the first run: removed although its twin came from the manifest.
    assert report.removed["duplicate"] == 1
    assert out.read_bytes() == full.read_bytes()


def test_shards_union_equals_full_run(library: Path, tmp_path: Path) -> None:
    full = tmp_path / "full.jsonl"
    options = CurateOptions(dedup_threshold=None)  # near-duplicates are removed per shard only
    curate([library], full, options=options, progress=False)
    parts = []
    for index in range(2):
        part = tmp_path / f"part{index}.jsonl"
        assert main(["curate", str(library), "--out", str(part), "--shard", f"{index}/2", "--workers", "1",
                     "--dedup-threshold", "-1", "--no-progress"]) == 0
        parts.append(part.read_text(encoding="utf-8").splitlines())
    assert parts[0] and parts[1]  # both shards got work on this input
    assert sorted(parts[0] + parts[1]) == sorted(full.read_text(encoding="utf-8").splitlines())


def test_captions_from_csv_and_filters(library: Path, tmp_path: Path) -> None:
    table = tmp_path / "captions.csv"
    table.write_text('videoid,name,page_dir\ncut,"a cut, from the csv",p1\nmove,moving texture,p1\n', encoding="utf-8")
    out = tmp_path / "m.jsonl"
    report = curate(
        [library / "cut.mp4", library / "sub"], out, progress=False, captions_csv=table,
        options=CurateOptions(min_motion=None, min_duration=2.6),
    )
    # The 2.5 s shots and the 2.5 s move video are shorter than 2.6 s; only the 3 s static video stays.
    assert report.removed["too_short"] == 4 and report.clips_kept == 1
    out2 = tmp_path / "m2.jsonl"
    curate([library / "cut.mp4", library / "sub"], out2, progress=False, captions_csv=table)
    captions = {Path(c.path).stem: c.caption for c in read_manifest(out2)}
    assert captions == {"cut": "a cut, from the csv", "move": "moving texture"}
    report = curate([library / "cut.mp4"], tmp_path / "m3.jsonl", progress=False, options=CurateOptions(min_size=100))
    assert report.removed["too_small"] == 1
    report = curate([library / "cut.mp4"], tmp_path / "m4.jsonl", progress=False, options=CurateOptions(max_motion=0.5))
    assert report.removed["too_fast"] == 2


def test_bad_inputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["curate", str(tmp_path / "missing"), "--out", str(tmp_path / "m.jsonl")]) == 2
    assert main(["curate", str(tmp_path), "--out", str(tmp_path / "m.jsonl"), "--shard", "2/2"]) == 2
    bad_csv = tmp_path / "c.csv"
    bad_csv.write_text("id,text\n1,x\n", encoding="utf-8")
    assert main(["curate", str(tmp_path), "--out", str(tmp_path / "m.jsonl"), "--captions", str(bad_csv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("motionkit: error: ") for line in err)
    assert "no such file or folder" in err[0] and "0 <= I < N" in err[1] and "videoid" in err[2]


def test_read_manifest_skips_and_reports_bad_lines(tmp_path: Path) -> None:
    good = Clip("v.mp4", 0, 24, 0.0, 2.0, 12.0, 64, 48, 1.5, "hi", "00ff00ff00ff00ff")
    path = tmp_path / "m.jsonl"
    path.write_text(good.to_json() + "\n{broken\n" + json.dumps({"path": "x"}) + "\n\n" + good.to_json() + "\n")
    errors: list[tuple[int, str]] = []
    clips = read_manifest(path, on_error=lambda n, reason: errors.append((n, reason)))
    assert len(clips) == 2 and clips[0].path == str(tmp_path / "v.mp4")
    assert [n for n, _ in errors] == [2, 3] and "missing field" in errors[1][1]


def test_hash_index_finds_near_duplicates() -> None:
    index = HashIndex(threshold=4)
    index.add(0x0F0F_0F0F_0F0F_0F0F)
    assert index.find(0x0F0F_0F0F_0F0F_0F0F ^ 0b1011) is not None  # 3 bits apart
    assert index.find(0x0F0F_0F0F_0F0F_0F0F ^ 0b11111) is None  # 5 bits apart


def test_decode_clip_matches_full_decode(library: Path) -> None:
    from motionkit.video_io import read_video

    full = read_video(library / "cut.mp4")
    indices = [45, 3, 3, 59]
    clip = decode_clip(str(library / "cut.mp4"), indices)  # seeks past frame 0, decodes out of order
    assert np.array_equal(clip, full[indices])
    tensor = decode_clip(str(library / "cut.mp4"), [40, 41], size=(32, 32), flip=True, output="tensor")
    assert tensor.shape == (2, 3, 32, 32) and -1.0 <= tensor.min() and tensor.max() <= 1.0
    assert decode_clip(str(library / "cut.mp4"), [0], short_side=24).shape == (1, 24, 32, 3)
    flipped = decode_clip(str(library / "cut.mp4"), [5], flip=True)
    assert np.array_equal(flipped[0], full[5][:, ::-1])
    with pytest.raises(MotionkitError, match="frame 60"):
        decode_clip(str(library / "cut.mp4"), [10, 60])


def test_frame_sampling_and_buckets() -> None:
    assert indices_by_stride(100, 16, 4, random_start=False) == list(range(19, 80, 4))
    short = indices_by_stride(10, 4, 4, random_start=False)  # 13-frame span does not fit: spread over 10
    assert short[0] == 0 and short[-1] == 9 and len(short) == 4
    assert indices_by_fps(100, 24.0, 4, 8.0, random_start=False, start=10) == [55, 58, 61, 64]  # 24 -> 8 fps: every 3rd
    assert closest_bucket(1920, 1080) == (384, 640)
    assert closest_bucket(1080, 1920) == (640, 384)
    assert closest_bucket(100, 100, [(256, 256), (256, 512)]) == (256, 256)

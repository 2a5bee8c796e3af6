"""``motionkit animate --video``: video-to-video from flags and batch files, fps resampling and frame ranges
recorded in the sidecar, with a LoRA and a MotionLoRA; ``motionkit eval --source``; one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from motionkit.cli import main
from motionkit.video_io import read_video, sidecar_path, write_video

from tests.test_cli_animate import animate, assets, one_thread  # noqa: F401  (fixtures)

SMALL = ["--width", "64", "--height", "64", "--steps", "2"]


@pytest.fixture(scope="module")
def source(assets):  # noqa: F811
    """A 24 fps clip of 12 frames, each a different grey, as a frame folder with its fps in a sidecar."""
    frames = np.stack([np.full((64, 64, 3), 20 * k, np.uint8) for k in range(12)])
    return write_video(frames, assets / "source", fps=24, metadata={})


def test_video_to_video_resamples_and_records_the_source(assets, source, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "restyled.mp4"
    motion_lora = assets / "motion.safetensors"
    from motionkit.formats import load_adapter
    from motionkit.train.motion_lora import add_trainable_lora, save_trained_lora

    adapter = load_adapter(assets / "adapter")
    add_trainable_lora(adapter, rank=2, alpha=2)
    save_trained_lora(adapter, motion_lora)
    code = animate(
        assets, "--prompt", "a watercolour street", "--video", str(source), "--strength", "0.6", "--video-frames", "3:",
        "--lora", f"{assets / 'style.safetensors'}:0.5", "--motion-lora", f"{motion_lora}:0.7", "--seed", "2", *SMALL,
        "--out", str(out),
    )
    assert code == 0, capsys.readouterr().err
    # Frames 3..11 of a 24 fps clip at the default 8 fps: source frames 3, 6, 9.
    assert read_video(out).shape == (3, 64, 64, 3)
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["video"] == {
        "path": str(source), "source_fps": 24.0, "fps": 8.0, "start": 3, "end": None, "frames": 3, "source_frames": [3, 9]
    }
    assert meta["settings"]["frames"] == 3 and meta["settings"]["strength"] == 0.6
    assert meta["settings"]["video_frames"] == "3:" and meta["motion_loras"][0]["scale"] == 0.7
    # eval --source picks the source frames the sidecar records and compares frame by frame.
    capsys.readouterr()
    assert main(["eval", str(out), "--source", str(source), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["compared_source_frames"] == 3 and report["source_frames"] == 3
    assert len(report["per_frame"]["psnr_source"]) == 3 and report["psnr_source"] > 0
    assert report["warping_error_source"] is not None


def test_video_fps_frames_and_batch(assets, source, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "slow.gif"
    args = ["--prompt", "a cat", "--video", str(source), "--video-fps", "12", "--fps", "12", "--frames", "5", *SMALL]
    assert animate(assets, *args, "--out", str(out)) == 0, capsys.readouterr().err
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["video"]["source_fps"] == 12.0 and meta["video"]["source_frames"] == [0, 4] and len(read_video(out)) == 5
    batch = {
        "base": str(assets / "base"), "adapter": str(assets / "adapter"), "steps": 2, "width": 64, "height": 64,
        "strength": 0.5, "video_frames": "0:6", "out": "videos",
        "prompts": [{"prompt": "a dog", "video": "source", "seed": 1}, {"prompt": "a fox", "video": "source", "video_fps": 8}],
    }
    config = assets / "v2v.yaml"  # "source" is relative to the batch file
    config.write_text(yaml.safe_dump(batch))
    assert main(["animate", "--config", str(config), "--out", str(tmp_path / "batch")]) == 0, capsys.readouterr().err
    metas = [json.loads(p.read_text()) for p in sorted((tmp_path / "batch").glob("*.json"))]
    assert [m["video"]["source_frames"] for m in metas] == [[0, 3], [0, 5]]  # 24 -> 8 fps: 0, 3; 8 -> 8 fps: 0..5
    assert [m["settings"]["frames"] for m in metas] == [2, 6]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--video", "missing.mp4"], "no such source video"),
        (["--video", "{source}", "--video-frames", "5"], "START:END"),
        (["--video", "{source}", "--video-frames", "30:"], "no frames in the source range 30:"),
        (["--video", "{source}", "--frames", "9"], "fewer than --frames 9"),
        (["--video", "{source}", "--image", "{first}"], "--image and --video do not mix"),
        (["--video-frames", "0:4"], "need a source video: pass --video"),
        (["--video", "{source}", "--video-fps", "-2"], "--video-fps must be a positive number"),
    ],
)
def test_bad_video_flags_are_one_line(assets, source, tmp_path, capsys, extra, needle):  # noqa: F811
    extra = [e.format(source=source, first=assets / "first.png") for e in extra]
    code = main(["animate", "--base", str(assets / "base"), "--adapter", str(assets / "adapter"), "--prompt", "x",
                 *SMALL, *extra, "--out", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and needle in err and len(err.splitlines()) == 1, err

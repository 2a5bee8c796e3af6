"""``motionkit animate`` with prompt travel, FreeNoise, motion strength and few-step presets: flags, YAML
batches, sidecar records and one-line refusals."""

from __future__ import annotations

import json

import pytest
import yaml

from motionkit.cli import main
from motionkit.video_io import read_video, sidecar_path

from tests.test_cli_animate import SMALL, animate, assets, one_thread  # noqa: F401


def _sidecar(out) -> dict:
    return json.loads(sidecar_path(out).read_text())


def test_prompt_at_free_noise_strength_and_preset_flags(assets, tmp_path, capsys):
    out = tmp_path / "travel.mp4"
    code = animate(
        assets, "--prompt-at", "0:a red ball", "--prompt-at", "50%@1.2:a blue cube", "--prompt-at=-1:a green cone",
        "--negative-at", "0:blurry", "--prompt-interpolation", "slerp", "--free-noise", "--free-noise-length", "4",
        "--free-noise-stride", "2", "--motion-strength", "0.5", "--preset", "lightning-2", "--seed", "3",
        "--frames", "8", "--width", "64", "--height", "64", "--out", str(out),
    )
    assert code == 0 and read_video(out).shape[0] == 8
    meta = _sidecar(out)
    assert [k["frame"] for k in meta["prompt_schedule"]] == [0, 4, 7]
    assert meta["prompt_schedule"][1] == {"key": "50%", "frame": 4, "prompt": "a blue cube", "weight": 1.2}
    assert meta["negative_prompt_schedule"][0]["prompt"] == "blurry"
    s = meta["settings"]
    assert (s["free_noise"], s["free_noise_length"], s["free_noise_stride"], s["motion_strength"]) == (True, 4, 2, 0.5)
    assert (s["preset"], s["steps"], s["guidance"], s["scheduler"], s["prompt_interpolation"]) == ("lightning-2", 2, 1.0, "euler", "slerp")


def test_prompt_schedule_string_and_preset_lora_warning(assets, tmp_path, capsys):
    out = tmp_path / "lcm.gif"
    code = animate(assets, "--prompt-schedule", "0: a red ball | -1: a blue cube", "--preset", "animatelcm", "--steps", "2", *SMALL[:6], "--out", str(out))
    assert code == 0
    err = capsys.readouterr().err
    assert "AnimateLCM_sd15_t2v_lora.safetensors" in err and "--lora" in err
    meta = _sidecar(out)
    assert meta["prompt"] == "0: a red ball | -1: a blue cube" and meta["settings"]["steps"] == 2  # the flag wins
    assert meta["settings"]["scheduler"] == "lcm" and meta["settings"]["guidance"] == 2.0


def test_batch_prompt_schedules(assets, tmp_path, capsys):
    config = tmp_path / "travel.yaml"
    config.write_text(yaml.safe_dump({
        "base": str(assets / "base"), "adapter": str(assets / "adapter"), "out": "videos", "frames": 6,
        "width": 64, "height": 64, "steps": 2, "free_noise": True, "free_noise_length": 4, "free_noise_stride": 2,
        "prompts": [
            {"prompt": {0: "a red ball", 3: "a blue cube"}, "negative_prompt": {0: "blurry", -1: "dark"}, "seed": 1},
            {"prompt_schedule": "0: a cat | 0.5: a dog", "motion_strength": 1.5, "prompt_interpolation": "slerp"},
            {"prompt": [{"frame": 0, "prompt": "a fox"}, {"frame": "-1", "prompt": "a hen", "weight": 0.8}], "out": "list.gif"},
        ],
    }, sort_keys=False))  # keys in the order written, as in a hand-written file
    assert main(["animate", "--config", str(config)]) == 0
    written = sorted((tmp_path / "videos").glob("*.*[!n]"))
    assert len([p for p in written if p.suffix in (".mp4", ".gif")]) == 3
    first = _sidecar(next(p for p in written if p.name.startswith("001")))
    assert [k["frame"] for k in first["negative_prompt_schedule"]] == [0, 5]
    second = _sidecar(next(p for p in written if p.name.startswith("002")))
    assert [k["frame"] for k in second["prompt_schedule"]] == [0, 2] and second["settings"]["motion_strength"] == 1.5
    third = _sidecar(tmp_path / "videos" / "list.gif")
    assert third["prompt_schedule"][1]["weight"] == 0.8 and third["settings"]["free_noise"] is True


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--prompt-at", "0:a", "--prompt-at", "8:b"], "prompt key 8 is past the video's 4 frames"),
        (["--prompt-at", "0:a", "--prompt-at", "3:b", "--prompt-at=-1:c"], "both fall on frame 3"),
        (["--prompt-at", "2:a", "--prompt-at", "1:b"], "comes after key '2'"),
        (["--prompt-schedule", "0: a | x: b"], "bad prompt key"),
        (["--prompt-at", "a cat"], "bad prompt entry"),
        (["--prompt", "a", "--prompt-at", "0:b"], "not --prompt and --prompt-at"),
        (["--prompt", "a", "--negative-at", "9:b"], "negative prompt key 9"),
        (["--prompt", "a", "--motion-strength", "-1"], "motion_strength"),
        (["--prompt", "a", "--free-noise", "--free-noise-stride", "40"], "context_stride"),
    ],
)
def test_bad_schedules_are_one_line(assets, tmp_path, capsys, argv, needle):
    assert animate(assets, *argv, *SMALL, "--out", str(tmp_path / "x.mp4")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not list(tmp_path.iterdir())


def test_batch_schedule_error_names_the_prompt(assets, tmp_path, capsys):
    config = tmp_path / "b.yaml"
    config.write_text(yaml.safe_dump({"base": str(assets / "base"), "adapter": str(assets / "adapter"), "out": "v", "frames": 4,
                                      "prompts": ["fine", {"prompt": {0: "a", 2: "b", 1: "c"}}]}, sort_keys=False))
    assert main(["animate", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("list keys in increasing frame order") and "prompt 2:" in err, err

"""``motionkit demo``: runs end to end on a models folder with the tiny family's layout (the shipped family
when installed, else a random stand-in), writes the videos and metrics, and refuses bad input in one line."""

from __future__ import annotations

import json

import pytest
import torch

from motionkit.cli import main
from motionkit.commands import demo
from motionkit.family import TinyFamily, write_stand_in_family

FAST = ["--steps", "2", "--frames", "4", "--seed", "3"]


def test_stand_in_has_the_family_layout(tmp_path):
    family = write_stand_in_family(tmp_path / "models")
    assert family.base.name == "tiny-base" and (family.base / "model_index.json").is_file()
    assert (family.personalized / "model_index.json").is_file()
    assert family.conditioning.is_file()
    from motionkit.formats import load_adapter

    assert load_adapter(family.adapter).config.image_cond_channels == 5
    # The personalized UNet differs from the base one: it is another model of the same family.
    base = (family.base / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert (family.personalized / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() != base


def test_demo_writes_videos_table_and_json(family_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default output folder is relative to the working directory
    assert main(["demo", "--models-dir", str(family_dir), *FAST, "--device", "cpu"]) == 0
    out = tmp_path / "motionkit-out" / "demo"
    for stem in ("a-image-model", "b-motion-adapter", "c-personalized"):
        assert (out / f"{stem}.mp4").stat().st_size > 0
        assert (out / f"{stem}.gif").stat().st_size > 0

    report = json.loads((out / "metrics.json").read_text())
    assert report["settings"] == {"steps": 2, "frames": 4, "seed": 3, "guidance": 4.0}
    assert set(report["videos"]) == {"a", "b", "c"}
    for metrics in report["videos"].values():
        assert metrics["frames"] == 4
        for key in ("warping_error", "temporal_flicker", "motion_score", "dynamic_degree", "first_frame_psnr", "first_frame_ssim"):
            assert key in metrics

    printed = capsys.readouterr().out
    for label in ("warping error", "flicker", "motion score", "dynamic degree", "first frame PSNR", "first frame SSIM"):
        assert label in printed
    assert "zero-initialised adapter" in printed  # says what the baseline is
    assert "(b) + adapter vs (a)" in printed and "(c) personalized vs (a)" in printed


def test_identity_baseline_is_the_image_model_alone(family_dir):
    """(a) runs a fresh copy of the adapter: its UNet output equals the plain UNet's, frame by frame."""
    from motionkit.adapter import MotionAdapter
    from motionkit.formats import load_adapter
    from motionkit.injection import inject
    from motionkit.pipeline.loading import load_base
    from motionkit.tiny import unet_inputs

    family = TinyFamily.at(family_dir)
    unet = load_base(family.base)["unet"]
    identity = MotionAdapter.from_config(load_adapter(family.adapter).config)
    inputs = unet_inputs(unet, frames=3)
    b, c, f, h, w = inputs["sample"].shape
    with torch.no_grad():
        alone = unet(
            inputs["sample"].transpose(1, 2).reshape(b * f, c, h, w),
            inputs["timestep"].repeat_interleave(f),
            inputs["encoder_hidden_states"].repeat_interleave(f, 0),
        ).sample.reshape(b, f, c, h, w).transpose(1, 2)
        motion = inject(unet, identity)
        cond = torch.randn(b, 5, f, h, w)
        wrapped = motion(**inputs, image_cond=cond).sample
        motion.eject()
    torch.testing.assert_close(wrapped, alone)


def test_verdict_reads_the_numbers():
    base = {"warping_error": 0.04, "mean_abs_frame_diff": 20.0, "motion_score": 1.0, "first_frame_psnr": 12.0, "first_frame_ssim": 0.3}
    good = {"warping_error": 0.01, "mean_abs_frame_diff": 5.0, "motion_score": 0.8, "first_frame_psnr": 30.0, "first_frame_ssim": 0.9}
    still = {**good, "motion_score": 0.0}
    lines = demo.verdict({"a": base, "b": good, "c": still})
    assert lines[0].startswith("(b) + adapter vs (a): shown") and "4.0x lower" in lines[0]
    assert "NOT shown" in lines[1] and "barely moving" in lines[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frames", "1"], "--frames must be at least 2"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--models-dir", "no/such/folder"], "no such models folder"),
    ],
)
def test_demo_refuses_bad_input_in_one_line(args, message, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_demo_names_a_missing_entry(tmp_path, capsys):
    (tmp_path / "bases").mkdir()
    assert main(["demo", "--models-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "conditioning.png" in err and len(err.splitlines()) == 1

    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "conditioning.png").write_bytes(b"")
    assert main(["demo", "--models-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no bases/tiny-base" in err and len(err.splitlines()) == 1

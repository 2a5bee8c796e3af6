"""``motionkit animate``: videos from a tiny base folder and a tiny adapter, sidecar metadata, YAML
batches, and one-line refusals of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from motionkit.adapter import MotionAdapter
from motionkit.cli import main
from motionkit.hostile import png_claiming
from motionkit.tiny import tiny_pipeline_components, tiny_unet
from motionkit.video_io import read_video, sidecar_path

SMALL = ["--frames", "4", "--width", "64", "--height", "64", "--steps", "2"]


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models on a shared CPU: thread hand-offs cost far more than the arithmetic.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from diffusers import StableDiffusionPipeline

    root = tmp_path_factory.mktemp("animate")
    components = tiny_pipeline_components(seed=0)
    StableDiffusionPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    ).save_pretrained(root / "base")
    MotionAdapter.from_unet(components["unet"]).save_pretrained(root / "adapter")
    MotionAdapter.from_unet(tiny_unet("tiny-sdxl")).save_pretrained(root / "adapter-xl")
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(root / "first.png")
    lora = {
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.randn(2, 32),
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.randn(32, 2),
    }
    from safetensors.torch import save_file

    save_file(lora, str(root / "style.safetensors"))
    return root


def animate(assets, *extra: str) -> int:
    return main(["animate", "--base", str(assets / "base"), "--adapter", str(assets / "adapter"), *extra])


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_animate_writes_video_and_sidecar(assets, tmp_path, capsys, suffix):
    out = tmp_path / f"clip{suffix}"
    code = animate(assets, "--prompt", "a red ball", "--negative-prompt", "blurry", "--seed", "7", *SMALL, "--out", str(out))
    assert code == 0, capsys.readouterr().err
    frames = read_video(out)
    assert frames.shape == (4, 64, 64, 3)
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["prompt"] == "a red ball"
    assert meta["negative_prompt"] == "blurry"
    assert meta["seed"] == 7
    assert meta["base"] == str(assets / "base") and meta["adapter"] == str(assets / "adapter")
    assert meta["loras"] == []
    assert meta["motionkit_version"]
    settings = meta["settings"]
    assert (settings["frames"], settings["width"], settings["height"], settings["steps"]) == (4, 64, 64, 2)
    assert settings["scheduler"] == "ddim" and settings["guidance"] == 7.5 and settings["dtype"] == "float32"


def test_animate_image_lora_and_seed(assets, tmp_path, capsys):
    first, again = tmp_path / "a.webp", tmp_path / "b.webp"
    args = ["--prompt", "a cat", "--image", str(assets / "first.png"), "--strength", "0.5", "--lora",
            f"{assets / 'style.safetensors'}:0.5", "--scheduler", "euler", "--seed", "3", *SMALL]
    assert animate(assets, *args, "--out", str(first)) == 0, capsys.readouterr().err
    assert animate(assets, *args, "--out", str(again)) == 0
    assert np.array_equal(read_video(first), read_video(again))  # the recorded seed reproduces the video
    meta = json.loads(sidecar_path(first).read_text())
    assert meta["loras"] == [{"path": str(assets / "style.safetensors"), "scale": 0.5}]
    assert meta["image"] == str(assets / "first.png") and meta["settings"]["strength"] == 0.5
    assert meta["settings"]["image_guidance"] == "pia"  # the default: the image conditions both guidance branches
    svd = tmp_path / "svd.webp"
    assert animate(assets, *args, "--image-guidance", "svd", "--out", str(svd)) == 0
    assert json.loads(sidecar_path(svd).read_text())["settings"]["image_guidance"] == "svd"


def test_animate_without_seed_records_one(assets, tmp_path):
    out = tmp_path / "frames"
    assert animate(assets, "--prompt", "a cat", *SMALL, "--frames", "2", "--out", f"{out}/") == 0
    assert len(read_video(out)) == 2
    assert isinstance(json.loads(sidecar_path(out).read_text())["seed"], int)


def test_batch_writes_one_file_per_prompt(assets, tmp_path, capsys):
    batch = {
        "base": str(assets / "base"),
        "adapter": str(assets / "adapter"),
        "frames": 3, "width": 64, "height": 64, "steps": 2,
        "negative_prompt": "ugly",
        "format": "gif",
        "out": "videos",
        "prompts": [
            "a dog running",
            {"prompt": "a boat", "seed": 11, "negative_prompt": "storm", "image": str(assets / "first.png"), "out": "boat.mp4"},
        ],
    }
    config = tmp_path / "batch.yaml"
    config.write_text(yaml.safe_dump(batch))
    assert main(["animate", "--config", str(config)]) == 0, capsys.readouterr().err
    written = sorted(p.name for p in (tmp_path / "videos").iterdir() if not p.name.endswith(".json"))
    assert written == ["001-a-dog-running.gif", "boat.mp4"]
    boat = json.loads(sidecar_path(tmp_path / "videos" / "boat.mp4").read_text())
    assert (boat["prompt"], boat["seed"], boat["negative_prompt"]) == ("a boat", 11, "storm")
    dog = json.loads(sidecar_path(tmp_path / "videos" / "001-a-dog-running.gif").read_text())
    assert dog["negative_prompt"] == "ugly"
    assert len(read_video(tmp_path / "videos" / "boat.mp4")) == 3


def test_batch_animatediff_lists_and_cli_override(assets, tmp_path, capsys):
    batch = {"base": str(assets / "base"), "adapter": str(assets / "adapter"), "steps": 2, "width": 64, "height": 64,
             "frames": 2, "prompt": ["one", "two"], "n_prompt": ["bad"], "seed": [5, 6], "out": "ignored"}
    config = tmp_path / "ad.yaml"
    config.write_text(yaml.safe_dump(batch))
    out = tmp_path / "here"
    assert main(["animate", "--config", str(config), "--out", str(out), "--frames", "3"]) == 0, capsys.readouterr().err
    metas = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert [(m["prompt"], m["seed"], m["negative_prompt"], m["settings"]["frames"]) for m in metas] == [
        ("one", 5, "bad", 3), ("two", 6, "bad", 3)
    ]


def _error_cases(root):
    base, adapter = str(root / "base"), str(root / "adapter")
    ok = ["--base", base, "--adapter", adapter, "--prompt", "x"]
    return {
        "missing base": (["--base", str(root / "nope"), "--adapter", adapter, "--prompt", "x", "--out", "o.mp4"], "nope"),
        "missing adapter": (["--base", base, "--adapter", str(root / "nope"), "--prompt", "x", "--out", "o.mp4"], "nope"),
        "other family": (["--base", base, "--adapter", str(root / "adapter-xl"), "--prompt", "x", *SMALL, "--out", "o.mp4"], "does not fit"),
        "size not multiple of 8": ([*ok, "--width", "100", "--out", "o.mp4"], "multiple of 8"),
        "size too small": ([*ok, "--height", "32", "--out", "o.mp4"], "too small"),
        "zero frames": ([*ok, "--frames", "0", "--out", "o.mp4"], "at least 1"),
        "bad lora spec": ([*ok, "--lora", "style.safetensors:strong", "--out", "o.mp4"], "must be a number"),
        "missing lora": ([*ok, "--lora", str(root / "none.safetensors:0.5"), "--out", "o.mp4"], "LoRA"),
        "not a lora": ([*ok, *SMALL, "--lora", str(root / "first.png"), "--out", "o.mp4"], "first.png"),
        "unknown scheduler": ([*ok, "--scheduler", "plms", "--out", "o.mp4"], "unknown scheduler"),
        "bad suffix": ([*ok, "--out", "o.avi"], "cannot write"),
        "no out": (ok, "--out"),
        "no prompt": (["--base", base, "--adapter", adapter, "--out", "o.mp4"], "--prompt"),
        "missing image": ([*ok, "--image", str(root / "nope.png"), "--out", "o.mp4"], "nope.png"),
        "fp16 on cpu": ([*ok, *SMALL, "--device", "cpu", "--dtype", "fp16", "--out", "o.mp4"], "fp16"),
        "too many steps": ([*ok, "--steps", "100000", "--out", "o.mp4"], "at most 1000"),
        "seed out of range": ([*ok, "--seed", str(2**70), "--out", "o.mp4"], "0 to 2**64 - 1"),
        "nan guidance": ([*ok, "--guidance", "nan", "--out", "o.mp4"], "--guidance must be a finite number"),
        "inf guidance": ([*ok, "--guidance", "inf", "--out", "o.mp4"], "--guidance must be a finite number"),
        "nan noise aug": ([*ok, "--noise-aug", "nan", "--out", "o.mp4"], "--noise-aug must be a finite number"),
        "too many frames": ([*ok, "--frames", "100000", "--out", "o.mp4"], "over the limit of 1024 (the decoded frames"),
        "too wide": ([*ok, "--width", "100000", "--out", "o.mp4"], "--no-limits"),
        "bomb image": ([*ok, "--image", str(root / "bomb.png"), "--out", "o.mp4"], "too many pixels"),
    }



@pytest.mark.parametrize(
    "case",
    ["missing base", "missing adapter", "other family", "size not multiple of 8", "size too small", "zero frames",
     "bad lora spec", "missing lora", "not a lora", "unknown scheduler", "bad suffix", "no out", "no prompt",
     "missing image", "fp16 on cpu", "too many steps", "seed out of range", "nan guidance", "inf guidance",
     "nan noise aug", "too many frames", "too wide", "bomb image"],
)
def test_errors_are_one_line(assets, tmp_path, monkeypatch, capsys, case):
    png_claiming(assets / "bomb.png", 16000, 16000)
    monkeypatch.chdir(tmp_path)
    argv, needle = _error_cases(assets)[case]
    assert main(["animate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("motionkit: error:") and needle in err
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize(
    "batch, needle",
    [
        ({"prompts": []}, "no prompts"),
        ({"prompts": ["x"], "colour": 1}, "unknown setting"),
        ({"prompts": [{"prompt": "x", "sead": 1}]}, "unknown key"),
        ({"prompts": ["x"], "out": None}, "output folder"),
        ({"prompts": ["x"], "out": "v.mp4"}, "folder"),
        ({"prompts": ["x"], "format": "avi"}, "avi"),
        ({"prompts": [{"prompt": "x", "frames": 0}]}, "prompt 1"),
        ({"prompts": [{"prompt": "x", "image_guidance": "both"}]}, "--image-guidance must be pia or svd"),
    ],
)
def test_batch_errors_are_one_line(assets, tmp_path, capsys, batch, needle):
    config = tmp_path / "b.yaml"
    config.write_text(yaml.safe_dump({"base": str(assets / "base"), "adapter": str(assets / "adapter"), "out": "v", **batch}))
    assert main(["animate", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    (tmp_path / "bad.yaml").write_text("prompts: [unclosed")
    assert main(["animate", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_motion_lora_flag_applies_scaled_motion_loras(assets, tmp_path, capsys):
    from motionkit.formats import load_adapter
    from motionkit.tiny import randomize_
    from motionkit.train.motion_lora import add_trainable_lora, save_trained_lora

    adapter = randomize_(load_adapter(assets / "adapter"))  # a fresh adapter's zero output would hide any LoRA
    adapter.save_pretrained(tmp_path / "moving")
    add_trainable_lora(adapter, rank=2, alpha=2)
    with torch.no_grad():
        for name, param in adapter.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    lora = save_trained_lora(adapter, tmp_path / "pan.safetensors")

    def run(out: str, *extra: str):
        args = ["animate", "--base", str(assets / "base"), "--adapter", str(tmp_path / "moving"), "--prompt", "a cat",
                "--seed", "1", *SMALL, "--out", str(tmp_path / out) + "/", *extra]
        assert main(args) == 0, capsys.readouterr().err
        return read_video(tmp_path / out)

    plain, scaled_zero = run("plain"), run("zero", "--motion-lora", f"{lora}:0")
    moved = run("moved", "--motion-lora", f"{lora}:1.0")
    assert np.array_equal(plain, scaled_zero), "scale 0 is no change"
    assert not np.array_equal(plain, moved), "the MotionLoRA changes the motion"
    meta = json.loads(sidecar_path(tmp_path / "moved").read_text())
    assert meta["motion_loras"] == [{"path": str(lora), "scale": 1.0}]
    assert main(["animate", "--base", str(assets / "base"), "--adapter", str(assets / "adapter"), "--prompt", "x",
                 *SMALL, "--motion-lora", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "x.gif")]) == 2
    assert "--motion-lora" in capsys.readouterr().err


def test_no_limits_lifts_the_ceilings_but_not_the_schedule_length():
    from motionkit.commands.animate import DEFAULTS, _check_settings

    big = {**DEFAULTS, "frames": 4096, "width": 4096, "height": 4096}
    with pytest.raises(Exception, match="--no-limits"):
        _check_settings(big)
    _check_settings({**big, "no_limits": True})  # allowed when asked for explicitly
    with pytest.raises(Exception, match="at most 1000"):
        _check_settings({**big, "no_limits": True, "steps": 5000})

"""``motionkit animate --ip-adapter``: an image prompt from flags and batch files, with a per-frame image and
scale schedule, a LoRA and context windows, recorded in the sidecar; one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from motionkit.cli import main
from motionkit.tiny import tiny_pipeline_components
from motionkit.video_io import read_video, sidecar_path

from tests.test_cli_animate import animate, assets, one_thread  # noqa: F401  (fixtures)
from tests.test_ip_adapter import write_ip_adapter

SMALL = ["--frames", "6", "--width", "64", "--height", "64", "--steps", "2"]


@pytest.fixture(scope="module")
def ip_file(assets):  # noqa: F811
    """An h94-layout folder: models/ip-adapter_0.safetensors beside models/image_encoder/."""
    path = write_ip_adapter(assets / "ip", tiny_pipeline_components(seed=0)["unet"], "plain", ".safetensors")
    for name, value in (("red.png", (220, 30, 30)), ("blue.png", (30, 30, 220))):
        Image.fromarray(np.full((48, 48, 3), value, np.uint8)).save(assets / name)
    return path


def test_ip_adapter_flags_schedule_and_sidecar(assets, ip_file, tmp_path, capsys):  # noqa: F811
    def run(name: str, *extra: str):
        out = tmp_path / name
        args = ["--prompt", "a cat", "--seed", "4", *SMALL, "--lora", f"{assets / 'style.safetensors'}:0.5", *extra]
        assert animate(assets, *args, "--out", str(out)) == 0, capsys.readouterr().err
        return read_video(out), json.loads(sidecar_path(out).read_text())

    red, meta = run("red.mp4", "--ip-adapter", f"{ip_file}:0.8", "--ip-image", str(assets / "red.png"))
    assert meta["ip_adapter"] == {
        "path": str(ip_file), "scale": 0.8, "encoder": str(ip_file.parent / "image_encoder"),
        "images": [{"frame": 0, "image": str(assets / "red.png")}], "scales": [],
    }
    blue, _ = run("blue.mp4", "--ip-adapter", f"{ip_file}:0.8", "--ip-image", str(assets / "blue.png"))
    assert red.shape == (6, 64, 64, 3) and not np.array_equal(red, blue)
    scheduled, meta = run(
        "travel.gif", "--ip-adapter", str(ip_file), "--ip-encoder", str(ip_file.parent / "image_encoder"),
        "--ip-image", f"0:{assets / 'red.png'}", "--ip-image", f"3:{assets / 'blue.png'}",
        "--ip-scale", "0:0.2", "--ip-scale", "5:1.0", "--context-length", "4", "--context-overlap", "2",
    )
    assert [i["frame"] for i in meta["ip_adapter"]["images"]] == [0, 3]
    assert meta["ip_adapter"]["scales"] == [{"frame": 0, "scale": 0.2}, {"frame": 5, "scale": 1.0}]
    assert scheduled.shape == (6, 64, 64, 3)


def test_batch_file_takes_ip_adapter_keys(assets, ip_file, tmp_path, capsys):  # noqa: F811
    batch = {
        "base": str(assets / "base"), "adapter": str(assets / "adapter"), "frames": 3, "steps": 2, "width": 64,
        "height": 64, "out": "videos", "ip_adapter": f"{ip_file}:0.6", "ip_image": ["0:red.png", "2:blue.png"],
        "ip_scale": ["0:1.0", "2:0.5"], "prompts": ["a dog", "a fox"],
    }
    config = assets / "ip.yaml"  # red.png / blue.png are relative to the batch file
    config.write_text(yaml.safe_dump(batch))
    assert main(["animate", "--config", str(config), "--out", str(tmp_path / "b")]) == 0, capsys.readouterr().err
    metas = [json.loads(p.read_text()) for p in sorted((tmp_path / "b").glob("*.json"))]
    assert len(metas) == 2 and all(m["ip_adapter"]["scale"] == 0.6 for m in metas)
    assert metas[0]["ip_adapter"]["images"] == [{"frame": 0, "image": str(assets / "red.png")},
                                                {"frame": 2, "image": str(assets / "blue.png")}]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--ip-image", "{red}"], "need an IP-Adapter: pass --ip-adapter"),
        (["--ip-adapter", "{ip}"], "needs a reference image"),
        (["--ip-adapter", "missing.bin", "--ip-image", "{red}"], "no such IP-Adapter file"),
        (["--ip-adapter", "{ip}", "--ip-image", "{red}", "--ip-encoder", "{assets}"], "no CLIP image encoder there"),
        (["--ip-adapter", "{ip}", "--ip-image", "{red}", "--ip-image", "{red}"], "each need their frame"),
        (["--ip-adapter", "{ip}", "--ip-image", "9:{red}"], "IP-Adapter frame 9 is out of range for 6 frames"),
        (["--ip-adapter", "{ip}", "--ip-image", "{red}", "--ip-scale", "0.5"], "bad --ip-scale value"),
        (["--ip-adapter", "{assets}/style.safetensors", "--ip-image", "{red}", "--ip-encoder", "{ip_dir}/image_encoder"],
         "not an IP-Adapter file"),
    ],
)
def test_bad_ip_adapter_flags_are_one_line(assets, ip_file, tmp_path, capsys, extra, needle):  # noqa: F811
    extra = [e.format(red=assets / "red.png", ip=ip_file, assets=assets, ip_dir=ip_file.parent) for e in extra]
    code = main(["animate", "--base", str(assets / "base"), "--adapter", str(assets / "adapter"), "--prompt", "x",
                 *SMALL, *extra, "--out", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and needle in err and len(err.splitlines()) == 1, err

"""``motionkit animate`` with control: --controlnet / --control-video, --sparsectrl / --keyframe, YAML batches,
the sidecar record and one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from diffusers import ControlNetModel
from PIL import Image

from motionkit.cli import main
from motionkit.formats import load_control_model
from motionkit.tiny import randomize_, tiny_pipeline_components
from motionkit.video_io import read_video, sidecar_path, write_video

from tests.test_cli_animate import SMALL, animate, assets, one_thread  # noqa: F401  (fixtures)
from tests.test_control import _sparsectrl


@pytest.fixture(scope="module")
def control_assets(assets):
    unet = tiny_pipeline_components(seed=0)["unet"]
    for name, seed in (("depth", 1), ("pose", 2)):
        randomize_(ControlNetModel.from_unet(unet), seed=seed, std=0.05).save_pretrained(assets / name)
    _sparsectrl().save_pretrained(assets / "sparse-rgb")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    write_video(frames, assets / "depth-frames/", fps=8)  # a folder of PNG frames
    write_video(frames[::-1].copy(), assets / "pose.gif", fps=8)
    Image.fromarray(frames[0]).save(assets / "last.png")
    return assets


def _run(assets, out, *extra: str) -> np.ndarray:
    code = animate(assets, "--prompt", "a dancer", "--seed", "5", *SMALL, "--out", str(out), *extra)
    assert code == 0
    return read_video(out)


def test_control_model_loader_reads_both_kinds(control_assets):
    from diffusers import SparseControlNetModel

    assert isinstance(load_control_model(control_assets / "depth"), ControlNetModel)
    assert isinstance(load_control_model(control_assets / "sparse-rgb"), SparseControlNetModel)


def test_controlnets_with_control_videos_and_sidecar(control_assets, tmp_path):
    a = control_assets
    plain = _run(a, tmp_path / "plain")
    off = _run(a, tmp_path / "off", "--controlnet", f"{a / 'depth'}:0", "--control-video", str(a / "depth-frames"))
    np.testing.assert_array_equal(off, plain)  # scale 0: no control
    out = tmp_path / "two"
    two = _run(
        a, out, "--controlnet", f"{a / 'depth'}:0.8", "--control-video", str(a / "depth-frames"),
        "--controlnet", str(a / "pose"), "--control-video", str(a / "pose.gif"),
        "--control-start", "0", "--control-start", "0.5", "--control-end", "1",
    )
    assert two.shape == (4, 64, 64, 3) and np.abs(two.astype(int) - plain.astype(int)).max() > 0
    control = json.loads(sidecar_path(out).read_text())["control"]
    assert control["sparsectrl"] is None
    assert [(n["scale"], n["start"], n["end"]) for n in control["controlnets"]] == [(0.8, 0.0, 1.0), (1.0, 0.5, 1.0)]
    assert control["controlnets"][1]["video"] == str(a / "pose.gif")


def test_sparsectrl_keyframes_animate_between_two_images_with_a_lora(control_assets, tmp_path):
    a = control_assets
    out = tmp_path / "between.gif"
    frames = _run(a, out, "--sparsectrl", f"{a / 'sparse-rgb'}:0.9", "--keyframe", f"0:{a / 'first.png'}",
                  f"--keyframe=-1:{a / 'last.png'}", "--lora", f"{a / 'style.safetensors'}:0.5")  # with an image LoRA
    assert frames.shape == (4, 64, 64, 3)
    sparse = json.loads(sidecar_path(out).read_text())["control"]["sparsectrl"]
    assert sparse["scale"] == 0.9 and [k["index"] for k in sparse["keyframes"]] == [0, -1]


def test_batch_file_takes_control_keys(control_assets, tmp_path, capsys):
    a = control_assets
    config = tmp_path / "batch.yaml"
    (tmp_path / "models").symlink_to(a, target_is_directory=True)
    config.write_text(yaml.safe_dump({
        "base": str(a / "base"), "adapter": str(a / "adapter"), "out": "videos", "format": "gif",
        "frames": 4, "width": 64, "height": 64, "steps": 1,
        "controlnet": ["models/depth:0.5"], "control_video": ["models/depth-frames"], "control_end": 0.5,
        "prompts": [{"prompt": "a dancer", "seed": 1}],
    }))
    assert main(["animate", "--config", str(config)]) == 0, capsys.readouterr().err
    written = sorted((tmp_path / "videos").glob("*.gif"))
    assert len(written) == 1
    control = json.loads(sidecar_path(written[0]).read_text())["control"]
    assert control["controlnets"][0]["scale"] == 0.5 and control["controlnets"][0]["end"] == 0.5


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--controlnet", "{a}/depth", "--controlnet", "{a}/pose", "--control-video", "{a}/pose.gif"], "need 2 --control-video"),
        (["--controlnet", "{a}/depth", "--control-video", "{a}/missing.mp4"], "no such control video"),
        (["--sparsectrl", "{a}/sparse-rgb", "--keyframe", "9:{a}/first.png"], "out of range for 4 frames"),
        (["--sparsectrl", "{a}/sparse-rgb", "--keyframe", "first.png"], "INDEX:IMAGE"),
        (["--keyframe", "0:{a}/first.png"], "needs a control model"),
        (["--controlnet", "{a}/depth", "--control-video", "{a}/pose.gif", "--sparsectrl", "{a}/sparse-rgb"], "do not mix"),
        (["--controlnet", "{a}/depth", "--control-video", "{a}/pose.gif", "--control-end", "0.5", "--control-end", "1",
          "--control-end", "1"], "3 values for 1"),
        (["--controlnet", "{a}/sparse-rgb", "--control-video", "{a}/pose.gif"], "pass it with --sparsectrl"),
        (["--controlnet", "{a}/depth", "--control-video", "{a}/first.png"], "has 1 frames but num_frames is 4"),
    ],
    ids=["count", "missing-video", "index", "keyframe-form", "no-model", "mixed", "fractions", "wrong-kind", "frames"],
)
def test_bad_control_flags_are_one_line(control_assets, tmp_path, capsys, extra, needle):
    argv = [part.format(a=control_assets) for part in extra]
    assert animate(control_assets, "--prompt", "x", *SMALL, "--out", str(tmp_path / "o.gif"), *argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err

"""``motionkit animate`` defaults from the models: a models folder's ``motionkit-app.json`` beside the base, then
the adapter's recorded training frames, then the fixed defaults; flags and batch files always win. And the
adapter's ``training_frames`` record through save, load and conversion."""

from __future__ import annotations

import json
import re
import shutil
import warnings

import numpy as np
import pytest
import yaml

from motionkit.adapter import MotionAdapter
from motionkit.cli import main
from motionkit.formats import load_adapter, save_adapter
from motionkit.model_defaults import DECLARATION, adapter_config, recorded_training_frames, training_frames
from motionkit.video_io import read_video, sidecar_path

SIZE = ["--width", "64", "--height", "64"]
DECLARED = {"frames": 3, "steps": 2, "guidance": 4.0, "fps": 6, "strength": 0.5, "negative_prompt": "blurry",
            "anchor_first_frame": True, "image_guidance": "svd", "noise_correlation": 0.5, "frame_noise_means": "shared",
            "image_inversion": 0.4, "free_init": 2, "about": "the page's text, not animate's"}


@pytest.fixture(scope="module")
def models(tmp_path_factory, write_models_folder):
    """A models folder (bases/base, adapters/adapter trained on 2 frames, a declaration) and a first frame."""
    root = write_models_folder(tmp_path_factory.mktemp("models"))
    (root / DECLARATION).write_text(json.dumps(DECLARED))
    return root


def animate(models, *extra: str) -> int:
    return main(["animate", "--base", str(models / "bases" / "base"), "--adapter", str(models / "adapters" / "adapter"), *extra])


def settings_of(out) -> dict:
    return json.loads(sidecar_path(out).read_text())


def test_the_declaration_beside_the_base_fills_what_is_not_given(models, tmp_path, capsys):
    out = tmp_path / "t2v.gif"
    assert animate(models, "--prompt", "a ball", "--seed", "1", *SIZE, "--out", str(out)) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    # Text-to-video keeps strength 1 (it refuses any other), so the declared strength is neither used nor named.
    assert "defaults from motionkit-app.json beside the base: 3 frames, 2 steps, guidance 4, noise correlation 0.5, frame noise means shared, FreeInit 2 passes, 6 fps, negative prompt 'blurry'\n" in printed
    meta = settings_of(out)
    s = meta["settings"]
    assert (s["frames"], s["steps"], s["guidance"], s["fps"], s["strength"]) == (3, 2, 4.0, 6, 1.0)
    assert meta["negative_prompt"] == "blurry" and len(read_video(out)) == 3
    assert s["noise_correlation"] == 0.5 and s["frame_noise_means"] == "shared" and s["image_guidance"] == "pia"
    assert s["image_inversion"] == 0.0  # the image's inversion is image-to-video's: there is no image here
    assert s["free_init"] == 2
    # The declared FreeInit passes sample the video: one pass with the same seed gives another.
    one_pass = tmp_path / "one-pass.gif"
    assert animate(models, "--prompt", "a ball", "--seed", "1", "--free-init", "0", *SIZE, "--out", str(one_pass)) == 0
    assert "FreeInit" not in capsys.readouterr().out and settings_of(one_pass)["settings"]["free_init"] == 0
    assert np.abs(read_video(out).astype(float) - read_video(one_pass).astype(float)).max() > 1

    i2v = tmp_path / "i2v.gif"
    assert animate(models, "--prompt", "a ball", "--image", str(models / "first.png"), *SIZE, "--out", str(i2v)) == 0
    assert "guidance 4, strength 0.5, anchor first frame True, image guidance svd, image inversion 0.4, 6 fps" in capsys.readouterr().out
    assert settings_of(i2v)["settings"]["strength"] == 0.5 and settings_of(i2v)["settings"]["anchor_first_frame"] is True
    # The declared noise correlation is text-to-video's: an image-to-video job samples independent noise.
    assert settings_of(i2v)["settings"]["noise_correlation"] == 0.0
    # So are its frame noise means: from an image every frame's noise mean is taken out (recorded as such).
    assert settings_of(i2v)["settings"]["frame_noise_means"] == "zero" and settings_of(i2v)["settings"]["image_guidance"] == "svd"
    assert settings_of(i2v)["settings"]["image_inversion"] == 0.4
    assert settings_of(i2v)["settings"]["free_init"] == 0  # FreeInit is text-to-video's too


def test_flags_and_batch_values_win_over_the_declaration(models, tmp_path, capsys):
    out = tmp_path / "flags.gif"
    flags = ["--frames", "2", "--guidance", "7", "--strength", "0.75", "--negative-prompt", "dark", "--fps", "4", "--no-anchor-first-frame",
             "--noise-correlation", "0.25", "--frame-noise-means", "drawn", "--image-guidance", "pia", "--image-inversion", "0"]
    assert animate(models, "--prompt", "a ball", "--image", str(models / "first.png"), *flags, *SIZE, "--out", str(out)) == 0
    assert capsys.readouterr().out.startswith("defaults from motionkit-app.json beside the base: 2 steps\n")
    meta = settings_of(out)
    s = meta["settings"]
    assert (s["frames"], s["steps"], s["guidance"], s["strength"], s["fps"]) == (2, 2, 7.0, 0.75, 4.0)
    assert s["noise_correlation"] == 0.25 and s["frame_noise_means"] == "drawn" and s["image_guidance"] == "pia"
    assert s["anchor_first_frame"] is False and s["image_inversion"] == 0.0
    assert meta["negative_prompt"] == "dark"

    batch = {"base": str(models / "bases" / "base"), "adapter": str(models / "adapters" / "adapter"), "width": 64,
             "height": 64, "steps": 3, "out": "videos", "format": "gif",
             "prompts": [{"prompt": "a boat", "frames": 2}, {"prompt": "a dog", "image": str(models / "first.png"), "strength": 0.9}]}
    config = tmp_path / "batch.yaml"
    config.write_text(yaml.safe_dump(batch))
    assert main(["animate", "--config", str(config), "--guidance", "5"]) == 0, capsys.readouterr().err
    boat, dog = (settings_of(p)["settings"] for p in sorted((tmp_path / "videos").glob("*.gif")))
    assert (boat["frames"], boat["steps"], boat["guidance"], boat["fps"]) == (2, 3, 5.0, 6)
    assert (dog["frames"], dog["strength"]) == (3, 0.9)  # the prompt's own strength, the declaration's frames


def test_a_base_s_own_settings_win_over_the_folder_s(models, tmp_path, capsys):
    declaration = models / DECLARATION
    try:
        declaration.write_text(json.dumps({**DECLARED, "bases": {"base": {"strength": 0.9, "image_inversion": 0.1, "steps": 3}}}))
        i2v = tmp_path / "own.gif"
        assert animate(models, "--prompt", "a ball", "--image", str(models / "first.png"), *SIZE, "--out", str(i2v)) == 0
        printed = capsys.readouterr().out
        assert "defaults from motionkit-app.json beside the base (with base's own): 3 frames, 3 steps" in printed
        assert "strength 0.9, anchor first frame True, image guidance svd, image inversion 0.1" in printed
        s = settings_of(i2v)["settings"]
        assert (s["strength"], s["image_inversion"], s["steps"], s["guidance"]) == (0.9, 0.1, 3, 4.0)  # the rest: the folder's
        # Another base in the same folder keeps the folder's settings.
        shutil.copytree(models / "bases" / "base", models / "bases" / "other")
        other = tmp_path / "other.gif"
        code = main(["animate", "--base", str(models / "bases" / "other"), "--adapter", str(models / "adapters" / "adapter"),
                     "--prompt", "a ball", "--image", str(models / "first.png"), *SIZE, "--out", str(other)])
        assert code == 0, capsys.readouterr().err
        assert "(with" not in capsys.readouterr().out
        s = settings_of(other)["settings"]
        assert (s["strength"], s["image_inversion"], s["steps"]) == (0.5, 0.4, 2)
    finally:
        declaration.write_text(json.dumps(DECLARED))
        shutil.rmtree(models / "bases" / "other", ignore_errors=True)


def test_a_preset_picks_its_own_sampling_over_the_declaration(models, tmp_path, capsys):
    from motionkit.commands.animate import _plan

    plan = _plan({"base": str(models / "bases" / "base"), "adapter": str(models / "adapters" / "adapter"),
                  "preset": "lightning-4", "out": str(tmp_path / "x.gif")}, [{"prompt": "a"}], tmp_path / "x.gif", batch=False)
    s = plan.jobs[0].settings
    assert (s["steps"], s["frames"]) == (4, 3)
    assert "steps" not in plan.defaults_note and "guidance" not in plan.defaults_note and "3 frames" in plan.defaults_note


def test_the_adapter_s_training_frames_without_a_declaration(models, tmp_path, capsys):
    lone = tmp_path / "lone"  # the same base outside any models folder
    shutil.copytree(models / "bases" / "base", lone)
    out = tmp_path / "a.gif"
    code = main(["animate", "--base", str(lone), "--adapter", str(models / "adapters" / "adapter"), "--prompt", "a",
                 "--steps", "1", *SIZE, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("defaults from the adapter's training length: 2 frames\n")
    s = settings_of(out)["settings"]
    assert (s["frames"], s["guidance"], s["fps"]) == (2, 7.5, 8.0)  # the rest: the fixed defaults


def test_a_broken_declaration_is_refused_in_one_line(models, tmp_path, capsys):
    declaration = models / DECLARATION
    try:
        for broken, needle in (({"frames": "eight"}, "frames must be int"), ({"colour": 1}, "unknown key 'colour'"),
                               ({"examples": 3}, "examples must be a list"),
                               ({"noise_correlation": 1.5}, "noise_correlation must lie in [0, 1)"),
                               ({"frame_noise_means": "mean"}, "frame_noise_means 'mean' is not one of drawn, shared, zero"),
                               ({"image_guidance": "both"}, "image_guidance 'both' is not one of pia, svd"),
                               ({"image_inversion": 1.5}, "image_inversion must lie in [0, 1]"),
                               ({"free_init": 2.5}, "free_init must be int"),
                               ({"free_init": -1}, "free_init must be a whole number of sampling passes"),
                               ({"bases": {"nobase": {"strength": 0.5}}}, "bases: nobase: no base of that name in bases/; use one of base"),
                               ({"bases": {"base": 3}}, "bases: base must be an object of settings"),
                               ({"bases": {"base": {"about": "x"}}}, "bases: base: unknown key 'about'"),
                               ({"bases": {"base": {"image_inversion": 2}}}, "bases: base: image_inversion must lie in [0, 1]")):
            declaration.write_text(json.dumps(broken))
            assert animate(models, "--prompt", "a", "--out", str(tmp_path / "x.gif")) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and needle in err and DECLARATION in err, err
        declaration.write_text(json.dumps(DECLARED))
        assert animate(models, "--prompt", "a", "--noise-correlation", "1", "--out", str(tmp_path / "x.gif")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--noise-correlation must lie in [0, 1)" in err, err
        assert animate(models, "--prompt", "a", "--image-inversion", "-0.1", "--out", str(tmp_path / "x.gif")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--image-inversion must lie in [0, 1]" in err, err
        assert animate(models, "--prompt", "a", "--free-init", "-2", "--out", str(tmp_path / "x.gif")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--free-init must be a whole number of sampling passes" in err, err
        declaration.write_text("{not json")
        assert animate(models, "--prompt", "a", "--out", str(tmp_path / "x.gif")) == 2
        assert "not readable JSON" in capsys.readouterr().err
        assert not list(tmp_path.iterdir())
    finally:
        declaration.write_text(json.dumps(DECLARED))


# --------------------------------------------------------------------------------------------- the record


def small_adapter(**config) -> MotionAdapter:
    return MotionAdapter(block_out_channels=(32, 64), layers_per_block=1, num_attention_heads=2, norm_num_groups=8,
                         max_seq_length=12, temporal_norm="across_frames", **config)


def test_training_frames_round_trips_through_save_load_and_convert(tmp_path, capsys):
    adapter = small_adapter(training_frames=10)
    adapter.save_pretrained(tmp_path / "folder")
    assert MotionAdapter.from_pretrained(tmp_path / "folder").config.training_frames == 10
    save_adapter(adapter, tmp_path / "single.safetensors")
    for source in ("folder", "single.safetensors"):
        assert load_adapter(tmp_path / source).config.training_frames == 10
        assert training_frames(adapter_config(tmp_path / source)) == 10
    # Every target keeps it: motionkit's config, diffusers' private copy of it, an AnimateDiff file's metadata.
    conversions = (("single.safetensors", "mk", "motionkit"), ("mk", "mk.safetensors", "motionkit"),
                   ("mk.safetensors", "df", "diffusers"), ("df", "ad.safetensors", "animatediff"), ("ad.safetensors", "back", "motionkit"))
    for source, target, fmt in conversions:
        assert main(["convert", str(tmp_path / source), str(tmp_path / target), "--to", fmt]) == 0, capsys.readouterr().err
        assert load_adapter(tmp_path / target).config.training_frames == 10
        assert recorded_training_frames(adapter_config(tmp_path / target)) == 10
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "df")]) == 0
    assert re.search(r"^trained on +10 frames$", capsys.readouterr().out, re.M)
    # A config from before the record loads, with nothing recorded.
    config = json.loads((tmp_path / "folder" / "config.json").read_text())
    del config["training_frames"]
    (tmp_path / "folder" / "config.json").write_text(json.dumps(config))
    assert MotionAdapter.from_pretrained(tmp_path / "folder").config.training_frames is None
    assert recorded_training_frames(adapter_config(tmp_path / "folder")) is None
    with pytest.raises(Exception, match="training_frames"):
        small_adapter(training_frames=0)


def test_diffusers_loads_an_export_that_records_training_frames(tmp_path):
    from diffusers import MotionAdapter as DiffusersMotionAdapter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the per-frame norm warning is not this test's business
        save_adapter(small_adapter(training_frames=10), tmp_path / "df", format="diffusers")
    config = json.loads((tmp_path / "df" / "config.json").read_text())
    assert "training_frames" not in config  # diffusers' MotionAdapter has no such field: only motionkit's private copy
    theirs, info = DiffusersMotionAdapter.from_pretrained(tmp_path / "df", output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    assert theirs.config.motion_max_seq_length == 12


def test_recorded_frames_stay_within_the_position_table():
    assert recorded_training_frames({"training_frames": 48, "max_seq_length": 32}) == 32
    assert recorded_training_frames({"max_seq_length": 32}) is None
    assert training_frames({"max_seq_length": 8}) == 8 and training_frames({}) == 16

"""The shipped tiny family: its bases and adapter load offline and sample a short video in seconds."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from motionkit.assets import tiny_family_path
from motionkit.errors import MotionkitError

PHOTOS = Path(__file__).resolve().parent.parent / "motionkit" / "assets" / "examples" / "photos"


@pytest.fixture(scope="module")
def family():
    return tiny_family_path()


def test_layout_is_what_the_app_and_demo_read(family):
    from motionkit.app.models import ModelsFolder

    models = ModelsFolder(family)
    models.check()
    assert {"tiny-base", "tiny-personalized"} <= set(models.names("base"))
    assert "tiny-motion" in models.names("adapter")
    assert (family / "examples" / "conditioning.png").is_file()
    assert (family / "MODEL_CARD.md").is_file()
    size = sum(p.stat().st_size for p in family.rglob("*") if p.is_file())
    assert size < 40e6, f"the tiny family grew to {size / 1e6:.1f} MB"


def test_family_ships_its_encoder_controlnet_and_motion_lora(family):
    """The SparseCtrl RGB encoder and the depth ControlNet load as diffusers models, shaped for the base's UNet;
    the zoom-in MotionLoRA is a LoRA of the adapter's temporal layers."""
    from diffusers import ControlNetModel, SparseControlNetModel, UNet2DConditionModel
    from safetensors import safe_open

    from motionkit.family import TinyFamily

    found = TinyFamily.at(family)
    unet = UNet2DConditionModel.load_config(found.base / "unet")
    encoder = SparseControlNetModel.from_pretrained(found.encoder)
    controlnet = ControlNetModel.from_pretrained(found.controlnet)
    for model in (encoder, controlnet):
        assert tuple(model.config.block_out_channels) == tuple(unet["block_out_channels"])
    assert encoder.config.conditioning_channels == 4 and encoder.config.concat_conditioning_mask
    with safe_open(str(found.motion_lora), framework="pt") as handle:
        keys = list(handle.keys())
    assert keys and all("lora" in key for key in keys)


def test_adapter_has_the_image_conditioning_branch(family):
    from motionkit.formats import load_adapter

    adapter = load_adapter(family / "adapters" / "tiny-motion")
    assert adapter.config.image_cond_channels == 5 and adapter.image_cond_conv is not None
    # Trained: the zero-initialised layers (temporal attention outputs, the conditioning conv) moved off zero.
    assert adapter.image_cond_conv.weight.abs().max() > 0
    zero_init = [p for n, p in adapter.named_parameters() if "proj_out.weight" in n]
    assert zero_init and all(p.abs().max() > 0 for p in zero_init)


@pytest.mark.parametrize("base", ["tiny-base", "tiny-personalized"])
def test_two_step_sample_runs(family, base):
    from motionkit.pipeline import MotionPipeline

    pipe = MotionPipeline.from_pretrained(family / "bases" / base, adapter=family / "adapters" / "tiny-motion")
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(
        "a red ball bouncing over a plain blue background, static camera",
        image=str(family / "examples" / "conditioning.png"),
        num_frames=8,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).frames[0]
    assert np.asarray(frames).shape == (8, 64, 64, 3) and np.isfinite(np.asarray(frames)).all()


def test_image_to_video_keeps_the_image_s_mean_colour(family):
    """With each frame's noise mean taken out (the default), frames 1..N-1 keep the example's mean colour; the
    drawn means tint every frame its own way (measured: delta E 1.3 against 4.8)."""
    from motionkit.family import TinyFamily
    from motionkit.metrics import colour_delta_e
    from motionkit.pipeline import MotionPipeline

    found = TinyFamily.at(family)
    pipe = MotionPipeline.from_pretrained(found.base, adapter=found.adapter)
    pipe.set_progress_bar_config(disable=True)
    image = np.asarray(Image.open(found.conditioning).convert("RGB"))

    def tint(**kw) -> float:
        frames = pipe(
            found.prompt, image=image, num_frames=8, num_inference_steps=25, guidance_scale=4.0, strength=0.65,
            anchor_first_frame=True, generator=torch.Generator().manual_seed(0), output_type="np", **kw,
        ).frames[0]
        video = (np.clip(np.asarray(frames), 0, 1) * 255).round().astype(np.uint8)
        return float(np.mean(colour_delta_e(video[1:], image)))

    centred, kept = tint(), tint(frame_noise_means="drawn")
    assert centred < 2.3 < kept, (centred, kept)  # 2.3: about a just-noticeable difference


def test_missing_family_is_one_line(monkeypatch, tmp_path):
    import motionkit.assets as assets

    monkeypatch.setattr(assets, "ASSETS_DIR", tmp_path)
    with pytest.raises(MotionkitError, match="make_tiny_family.sh") as info:
        assets.tiny_family_path()
    assert "\n" not in str(info.value)


def _example_script(name: str):
    import importlib.util

    folder = Path(__file__).resolve().parent.parent / "examples" / "tiny_family"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # as Python does for a script run from there: family_runs imports
    path = folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluate_i2v():
    return _example_script("evaluate_i2v")


def test_motion_lora_evaluation_prompts_without_the_move_and_can_fail():
    evaluate = _example_script("evaluate_motion_lora")
    assert evaluate.prompt_without_camera("a red ball on a lawn, static camera", "static camera") == "a red ball on a lawn"
    with pytest.raises(SystemExit, match="does not name its camera"):
        evaluate.prompt_without_camera("a red ball on a lawn", "static camera")
    # The effect is a mean log ratio: a LoRA that magnifies 1.1x where the world zooms 1.2x clears half of it.
    world = evaluate.log_effect([(1.2, 1.0), (1.1, 0.9)])
    assert evaluate.log_effect([(1.1, 1.0), (1.0, 0.9)]) >= evaluate.SHARE_OF_WORLD * world
    assert evaluate.log_effect([(1.0, 1.0), (0.9, 0.9)]) < evaluate.SHARE_OF_WORLD * world


def test_motion_lora_evaluation_runs_on_the_family(family, tmp_path):
    import json

    out = tmp_path / "eval"
    code = _example_script("evaluate_motion_lora").main([
        "--family", str(family), "--scenes", "1", "--clip-frames", "4", "--text-to-video", "--out", str(out),
        "--frames", "4", "--steps", "3",
    ])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["passed"]) == {"image-to-video", "text-to-video"}
    (scene,) = report["scenes"]
    assert "camera" not in scene["prompt"]
    assert set(scene) == {"prompt", "real_still", "real_zooming", "image-to-video without", "image-to-video with",
                          "image-to-video words", "text-to-video without", "text-to-video with", "text-to-video words"}
    assert set(report["words_effects"]) == {"image-to-video", "text-to-video"}
    assert scene["real_zooming"] > scene["real_still"]  # the world's own zoom reads as one
    assert all(0.5 < value < 2.0 for key, value in scene.items() if key != "prompt")
    assert len(list((out / "videos" / "scene-000-image-to-video-with").glob("*.png"))) == 4
    assert (out / "contact_sheet.png").stat().st_size > 0 and "| image-to-video, with the MotionLoRA |" in (out / "table.md").read_text()


def test_controlnet_evaluation_judges_the_share_of_the_gap_closed():
    evaluate = _example_script("evaluate_controlnet")
    assert evaluate.gap_closed(3.0, 1.0, 5.0) == pytest.approx(0.5)
    assert evaluate.gap_closed(3.0, 1.0, 5.0) >= evaluate.SHARE_OF_GAP > evaluate.gap_closed(2.0, 1.0, 5.0)
    assert evaluate.gap_closed(1.0, 1.0, 5.0) == 0.0  # a ControlNet that changes nothing closes nothing
    assert evaluate.gap_closed(2.0, 2.0, 2.0) == 0.0
    with pytest.raises(SystemExit, match="--clips must be at least 1, got 0"):
        evaluate.main(["--clips", "0", "--out", "unused"])


def test_evaluations_refuse_unknown_scene_kinds(capsys):
    with pytest.raises(SystemExit):
        _example_script("evaluate_controlnet").main(["--kinds", "lanscape", "--out", "unused"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'lanscape': give world scene kinds among landscape, pattern" in error
    import family_runs  # on sys.path once an example script is loaded

    assert family_runs.scene_kinds(" landscape ,pattern") == ("landscape", "pattern")


def test_controlnet_evaluation_runs_on_the_family(family, tmp_path):
    import json

    out = tmp_path / "eval"
    code = _example_script("evaluate_controlnet").main([
        "--family", str(family), "--clips", "1", "--clip-frames", "4", "--out", str(out), "--frames", "4", "--steps", "3",
    ])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    (clip,) = report["clips"]
    assert set(clip) == {"caption", "kind", "edges real through the VAE", "psnr real through the VAE", "edges without",
                         "psnr without", "edges with", "psnr with", "edges image-to-video", "psnr image-to-video"}
    assert clip["edges real through the VAE"] > 1.5  # the real clip's own edges lie on its maps
    assert clip["edges with"] != clip["edges without"]  # the ControlNet ran
    assert report["passed"] == (report["gap_closed"] >= 0.5)
    assert set(report["gap_closed_by_kind"]) == {clip["kind"]} and clip["kind"] in ("landscape", "pattern")
    assert len(list((out / "videos" / "clip-000-depth").glob("*.png"))) == 4
    assert len(list((out / "videos" / "clip-000-with").glob("*.png"))) == 4
    assert (out / "contact_sheet.png").stat().st_size > 0 and "| text-to-video with the depth ControlNet |" in (out / "table.md").read_text()


def test_i2v_targets_judge_against_the_real_clip_through_the_vae():
    evaluate = _evaluate_i2v()
    real = {"psnr_image": 16.0, "psnr_frame0": 23.0, "motion_score": 0.6, "jump_ratio": 1.0, "warping_error": 0.003}
    held = {"psnr_image": 15.6, "psnr_frame0": 24.5, "motion_score": 0.4, "jump_ratio": 1.2, "warping_error": 0.005}
    assert all(evaluate.verdicts(held, real).values())
    frozen = {**held, "psnr_image": 15.4, "psnr_frame0": 25.5, "motion_score": 0.2, "jump_ratio": 1.6, "warping_error": 0.007}
    assert not any(evaluate.verdicts(frozen, real).values())


def test_i2v_evaluation_reads_the_captioned_pan():
    evaluate = _evaluate_i2v()
    assert evaluate.captioned_pan("a red ball on a lawn, camera panning left") == -1.0
    assert evaluate.captioned_pan("a red ball on a lawn, camera panning right") == 1.0
    assert evaluate.captioned_pan("a red ball on a lawn, camera panning up") == 0.0
    assert evaluate.captioned_pan("a red ball on a lawn, static camera") == 0.0


def test_i2v_evaluation_runs_on_the_family(family, tmp_path):
    import json

    out = tmp_path / "eval"
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(PHOTOS / "cat.jpg", photos / "cat.jpg")
    shutil.copy(PHOTOS / "coffee.jpg", photos / "coffee.jpg")
    # --frames and --steps are motionkit animate's flags, passed on to it.
    code = _evaluate_i2v().main([
        "--family", str(family), "--clips", "1", "--clip-frames", "4", "--sheet-clips", "1", "--photos", str(photos), "--vae-frames", "2",
        "--out", str(out), "--frames", "4", "--steps", "5",
    ])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["passed"]) == {"psnr_image", "psnr_frame0", "motion_score", "jump_ratio", "warping_error", "photos", "vae"}
    assert report["settings"]["animate_flags"] == ["--frames", "4", "--steps", "5"]
    generated, real = report["mean"]["generated"], report["mean"]["real_through_vae"]
    assert 5.0 < generated["psnr_image"] < 60.0 and 5.0 < real["psnr_image"] < 60.0
    cat, coffee = report["photos"]
    for photo in (cat, coffee):
        assert 3.0 < photo["psnr_image"] < 60.0 and -2.0 < photo["layout_kept"] < 2.0
        assert photo["passed"] == (photo["psnr_image"] >= 15.0 and photo["layout_kept"] >= 0.5)
    # The family's rule for unfamiliar images: the coffee cup by both signals, the smooth cat by its colours alone.
    familiarity = cat["familiarity"]
    assert cat["photo"] == "cat.jpg" and familiarity["applied"] is True
    assert familiarity["denoising_error"] <= familiarity["limit"] and familiarity["colour_distance"] > familiarity["colour_limit"]
    assert coffee["familiarity"]["applied"] is True and coffee["familiarity"]["denoising_error"] > coffee["familiarity"]["limit"]
    assert "colour distance 0.589 > 0.56 (unfamiliar-image settings)" in (out / "table.md").read_text()
    assert "(unfamiliar-image settings)" in (out / "table.md").read_text()
    assert len(list((out / "videos" / "photo-cat").glob("*.png"))) == 4  # lossless frames straight from animate
    assert (out / "contact_sheet.png").stat().st_size > 0 and "| psnr_image |" in (out / "table.md").read_text()

"""MotionPipelineXL: equality with diffusers' AnimateDiffSDXLPipeline, SDXL prompt conditioning, image-to-video,
context windows, SDXL scheduler betas, and automatic SDXL dispatch in from_pretrained / the animate CLI."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AnimateDiffSDXLPipeline, StableDiffusionXLPipeline

from motionkit import MotionAdapter, MotionkitError
from motionkit.formats.diffusers_format import to_diffusers_adapter, to_unet_motion_model
from motionkit.pipeline.loading import config_dir
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.pipeline.motion_pipeline_xl import MotionPipelineXL
from motionkit.pipeline.schedulers import SCHEDULERS, make_scheduler
from motionkit.tiny import randomize_, tiny_pipeline_components

from tests.test_pipeline import FRAMES, SIZE, TABLE, _run
# Family-independent behaviour, checked on the SDXL pipeline too: pytest collects these here, where
# ``pipe`` is this module's fixture.
from tests.test_pipeline import (  # noqa: F401
    test_callback_on_step_end_runs_every_step,
    test_free_init_changes_output_and_disabling_restores_it,
    test_image_to_video_training_free_reproduces_first_frame,
    test_same_seed_same_video_and_output_types,
    test_table_length_window_equals_no_context,
)


def _adapter(unet) -> MotionAdapter:
    adapter = MotionAdapter.from_unet(unet, preset="animatediff-sdxl-beta", max_seq_length=TABLE)
    assert adapter.config.temporal_norm == "across_frames"  # the SDXL beta module's GroupNorm, as diffusers'
    return randomize_(adapter)


def _xl_components() -> dict:
    components = tiny_pipeline_components(family="sdxl")
    components["scheduler"] = make_scheduler("ddim", components["scheduler"].config, family="sdxl")
    return components


@pytest.fixture(scope="module")
def pipe() -> MotionPipelineXL:
    components = _xl_components()
    pipe = MotionPipeline.from_components(components, _adapter(components["unet"]))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_components_pick_the_xl_pipeline(pipe):
    assert type(pipe) is MotionPipelineXL and pipe.family == "sdxl"
    assert pipe.text_encoder_2 is not None and pipe.config.force_zeros_for_empty_prompt
    with pytest.raises(MotionkitError, match="MotionPipelineXL"):
        MotionPipeline(**{k: v for k, v in _xl_components().items() if "_2" not in k}, adapter=pipe.adapter)
    sd = tiny_pipeline_components()
    sd_pipe = MotionPipeline.from_components(sd, MotionAdapter.from_unet(sd["unet"], preset="animatediff-v2"))
    assert type(sd_pipe) is MotionPipeline
    with pytest.raises(MotionkitError, match="MotionPipeline"):
        MotionPipelineXL.from_components({**sd, "text_encoder_2": None, "tokenizer_2": None}, sd_pipe.adapter)


def test_text_to_video_equals_animatediff_sdxl_pipeline(pipe):
    fresh = tiny_pipeline_components(family="sdxl")  # the same seed builds the same base weights
    reference = AnimateDiffSDXLPipeline(
        vae=fresh["vae"], text_encoder=fresh["text_encoder"], text_encoder_2=fresh["text_encoder_2"],
        tokenizer=fresh["tokenizer"], tokenizer_2=fresh["tokenizer_2"],
        # Prebuilt: diffusers' from_unet2d leaves SDXL's add_embedding at random init.
        unet=to_unet_motion_model(fresh["unet"], pipe.adapter), motion_adapter=to_diffusers_adapter(pipe.adapter),
        scheduler=make_scheduler("ddim", pipe.scheduler.config, family="sdxl"),
    )
    reference.set_progress_bar_config(disable=True)
    common = dict(prompt="a cat walking", num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=2,
                  guidance_scale=7.5)  # AnimateDiffSDXLPipeline's default guidance is 5.0
    # A negative prompt, then none: the negative conditioning is zeros (force_zeros_for_empty_prompt).
    for negative, output_type in (("blurry", "pt"), (None, "np")):
        args = dict(common, negative_prompt=negative, output_type=output_type)
        expected = reference(**args, generator=torch.Generator().manual_seed(0)).frames
        actual = pipe(**args, generator=torch.Generator().manual_seed(0)).frames
        assert actual.shape == expected.shape
        torch.testing.assert_close(torch.as_tensor(actual), torch.as_tensor(expected), atol=1e-4, rtol=0)
    assert actual.shape == (1, FRAMES, SIZE, SIZE, 3)


def test_added_conditioning_is_batched_for_guidance(pipe):
    seen = {}

    def callback(p, i, t, tensors):
        seen.update(tensors)
        return {}

    keys = ["latents", "prompt_embeds", "add_text_embeds", "add_time_ids"]
    _run(pipe, negative_prompt=None, num_frames=2, num_inference_steps=1, num_videos_per_prompt=2,
         original_size=(128, 96), crops_coords_top_left=(8, 0), negative_target_size=(32, 32),
         callback_on_step_end=callback, callback_on_step_end_tensor_inputs=keys)
    assert seen["prompt_embeds"].shape[0] == seen["add_text_embeds"].shape[0] == seen["add_time_ids"].shape[0] == 4
    # Negative half first; no negative prompt gives zero embeddings, as SDXL was trained.
    assert not seen["prompt_embeds"][:2].any() and not seen["add_text_embeds"][:2].any()
    assert seen["prompt_embeds"][2:].abs().sum() > 0
    positive = [128, 96, 8, 0, SIZE, SIZE]
    assert seen["add_time_ids"][2:].tolist() == [positive] * 2
    assert seen["add_time_ids"][:2].tolist() == [[128, 96, 8, 0, 32, 32]] * 2  # unset negative ids follow positive
    with pytest.raises(MotionkitError, match="pooled_prompt_embeds"):
        _run(pipe, prompt=None, negative_prompt=None, prompt_embeds=seen["prompt_embeds"][2:3])
    with pytest.raises(TypeError, match="prompt_3"):
        _run(pipe, prompt_3="typo")


def test_context_windows_carry_the_added_conditioning(pipe):
    frames = _run(pipe, num_frames=12, num_inference_steps=1, context_length=6, context_overlap=2)
    assert frames.shape == (1, 12, 3, SIZE, SIZE) and torch.isfinite(frames).all()


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_sdxl_schedulers_keep_the_base_betas(name):
    shipped = json.loads((config_dir("sdxl") / "scheduler" / "scheduler_config.json").read_text())
    xl = make_scheduler(name, shipped, family="sdxl").config
    assert (xl.beta_schedule, xl.beta_start, xl.beta_end) == ("scaled_linear", 0.00085, 0.02)
    assert xl.steps_offset == 1
    sd = make_scheduler(name, shipped).config  # SD 1.x/2.x adapters: AnimateDiff's linear betas win
    assert (sd.beta_schedule, sd.beta_end) == ("linear", 0.012)
    bare = make_scheduler(name, family="sdxl").config  # no base config: AnimateDiff SDXL's schedule
    assert (bare.beta_schedule, bare.beta_end) == ("scaled_linear", 0.02)


@pytest.fixture(scope="module")
def xl_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("xl")
    components = tiny_pipeline_components(family="sdxl")
    StableDiffusionXLPipeline(**components).save_pretrained(root / "base")
    _adapter(components["unet"]).save_pretrained(root / "adapter")
    return root


def test_from_single_file_gives_the_xl_pipeline_for_sdxl_bases(monkeypatch, tmp_path):
    from motionkit.pipeline import loading

    components = _xl_components()
    monkeypatch.setattr(loading, "load_base", lambda path, **kwargs: components)  # reading files is test_loading's
    pipe = MotionPipeline.from_single_file(tmp_path / "xl.safetensors", adapter=_adapter(components["unet"]))
    assert type(pipe) is MotionPipelineXL and pipe.unet is components["unet"]


def test_from_pretrained_reads_an_sdxl_folder(xl_folder):
    pipe = MotionPipeline.from_pretrained(xl_folder / "base", adapter=xl_folder / "adapter")
    assert type(pipe) is MotionPipelineXL and pipe.tokenizer_2 is not None
    pipe.set_progress_bar_config(disable=True)
    assert _run(pipe, num_frames=2, num_inference_steps=1).shape == (1, 2, 3, SIZE, SIZE)


def test_cli_animates_an_sdxl_folder(xl_folder, tmp_path, capsys):
    from motionkit.cli import main
    from motionkit.video_io import read_video

    out = tmp_path / "xl.mp4"
    code = main([
        "animate", "--base", str(xl_folder / "base"), "--adapter", str(xl_folder / "adapter"), "--prompt", "a red ball",
        "--frames", "6", "--width", "64", "--height", "64", "--steps", "2", "--seed", "1", "--out", str(out),
    ])
    assert code == 0, capsys.readouterr().err
    assert read_video(out).shape == (6, 64, 64, 3)


def test_float16_vae_decodes_in_float32():
    components = _xl_components()
    pipe = MotionPipeline.from_components(components, _adapter(components["unet"]))
    latents = torch.randn(1, 4, 2, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(0))
    expected = pipe.decode_latents(latents)
    pipe.vae.to(torch.float16)  # SDXL's VAE overflows in float16: decoding upcasts it for the call
    seen = []
    pipe.vae.decoder.conv_in.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    decoded = pipe.decode_latents(latents)
    assert seen == [torch.float32] and pipe.vae.dtype == torch.float16
    torch.testing.assert_close(decoded, expected, atol=1e-2, rtol=0)  # float16-rounded weights, float32 maths

"""Control: equality with diffusers' AnimateDiffControlNetPipeline and AnimateDiffSparseControlNetPipeline,
context windows, FreeInit, image-to-video, SDXL ControlNets, saving, and refusal of bad input."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import (
    AnimateDiffControlNetPipeline,
    AnimateDiffSparseControlNetPipeline,
    ControlNetModel,
    SparseControlNetModel,
)
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

from motionkit import MotionkitError
from motionkit.formats.diffusers_format import to_diffusers_adapter, to_unet_motion_model
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.pipeline.schedulers import make_scheduler
from motionkit.tiny import randomize_, tiny_pipeline_components

from tests.test_pipeline import FRAMES, SIZE, _adapter

STEPS = 4  # enough steps for start/end fractions to switch nets on and off


def _assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # Random tiny models grow the latents to ~25 over a few DDIM steps; float32 agrees to ~1e-6 of their peak.
    assert actual.shape == expected.shape
    tolerance = 2e-6 * max(1.0, float(expected.abs().max()))
    assert float((actual - expected).abs().max()) <= tolerance


def _controlnet(unet, seed: int) -> ControlNetModel:
    # Random everywhere, zero convolutions included, so the residuals are not vacuous.
    return randomize_(ControlNetModel.from_unet(unet), seed=seed, std=0.05).eval()


def _sparsectrl(rgb: bool = True, seed: int = 5, table: int = 16) -> SparseControlNetModel:
    model = SparseControlNetModel(
        conditioning_channels=4 if rgb else 3,
        use_simplified_condition_embedding=rgb,
        conditioning_embedding_out_channels=(8, 8, 16, 16),
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
        layers_per_block=2,
        cross_attention_dim=16,
        norm_num_groups=8,
        attention_head_dim=4,
        motion_num_attention_heads=2,
        motion_max_seq_length=table,
    )
    return randomize_(model, seed=seed, std=0.05).eval()


def _frames(count: int, seed: int) -> list[PIL.Image.Image]:
    rng = np.random.default_rng(seed)
    return [PIL.Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(count)]


def _pipe(controlnet, seed: int = 0) -> MotionPipeline:
    components = tiny_pipeline_components(seed)
    components["scheduler"] = make_scheduler("ddim", components["scheduler"].config)
    pipe = MotionPipeline.from_components(components, _adapter(components["unet"]), controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _reference(cls, pipe: MotionPipeline, controlnet):
    fresh = tiny_pipeline_components()  # the same seed builds the same base weights
    reference = cls(
        vae=fresh["vae"], text_encoder=fresh["text_encoder"], tokenizer=fresh["tokenizer"],
        unet=to_unet_motion_model(fresh["unet"], pipe.adapter), motion_adapter=to_diffusers_adapter(pipe.adapter),
        controlnet=controlnet, scheduler=make_scheduler("ddim", pipe.scheduler.config),
    )
    reference.set_progress_bar_config(disable=True)
    return reference


COMMON = dict(prompt="a cat walking", negative_prompt="blurry", num_frames=FRAMES, height=SIZE, width=SIZE,
              num_inference_steps=STEPS, guidance_scale=3.0, output_type="latent")


def _latents(pipeline, seed: int = 0, **kwargs) -> torch.Tensor:
    return pipeline(**{**COMMON, **kwargs}, generator=torch.Generator().manual_seed(seed)).frames


@pytest.fixture(scope="module")
def sd_unet():
    return tiny_pipeline_components()["unet"]


@pytest.fixture(scope="module")
def controlnets(sd_unet):
    return [_controlnet(sd_unet, seed=1), _controlnet(sd_unet, seed=2)]


@pytest.fixture(scope="module")
def control_pipe(controlnets):
    return _pipe(controlnets[0])


# -- equality with diffusers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "control",
    [
        dict(controlnet_conditioning_scale=0.8, control_guidance_start=0.25, control_guidance_end=0.75),
        dict(controlnet_conditioning_scale=1.0, guess_mode=True, guidance_scale=1.0),  # guess mode's scales
    ],
    ids=["schedule", "guess-mode"],
)
def test_single_controlnet_equals_animatediff_controlnet_pipeline(control_pipe, controlnets, control):
    video = _frames(FRAMES, seed=0)
    reference = _reference(AnimateDiffControlNetPipeline, control_pipe, controlnets[0])
    expected = _latents(reference, conditioning_frames=video, **control)
    actual = _latents(control_pipe, conditioning_frames=video, **control)
    _assert_same(actual, expected)
    plain = _latents(control_pipe, **{k: v for k, v in control.items() if k == "guidance_scale"})
    assert (actual - plain).abs().max() > 1e-3  # the control did something


def test_multi_controlnet_equals_animatediff_controlnet_pipeline(controlnets):
    pipe = _pipe(controlnets)
    assert isinstance(pipe.controlnet, MultiControlNetModel)
    videos = [_frames(FRAMES, seed=1), _frames(FRAMES, seed=2)]
    control = dict(
        conditioning_frames=videos, controlnet_conditioning_scale=[0.7, 1.3],
        control_guidance_start=[0.0, 0.25], control_guidance_end=[0.75, 1.0],
    )
    reference = _reference(AnimateDiffControlNetPipeline, pipe, MultiControlNetModel(controlnets))
    expected = _latents(reference, **control)
    actual = _latents(pipe, **control)
    _assert_same(actual, expected)
    # Each net's scale counts: the second net alone is not the pair.
    alone = _latents(pipe, **{**control, "controlnet_conditioning_scale": [0.0, 1.3]})
    assert (alone - actual).abs().max() > 1e-3


@pytest.fixture
def vae_mode(monkeypatch):
    """diffusers' SparseCtrl pipeline samples the keyframes' VAE posterior with the global RNG; motionkit takes
    its mode (deterministic). Make diffusers take the mode too, so the two are comparable."""
    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())


@pytest.mark.parametrize(
    ("rgb", "indices"), [(True, [0]), (True, [0, FRAMES - 1]), (False, [0, 3])], ids=["rgb-first", "rgb-first-last", "scribble"]
)
def test_sparsectrl_equals_animatediff_sparsectrl_pipeline(vae_mode, rgb, indices):
    model = _sparsectrl(rgb=rgb)
    pipe = _pipe(model)
    keyframes = _frames(len(indices), seed=3)
    control = dict(conditioning_frames=keyframes, controlnet_frame_indices=indices, controlnet_conditioning_scale=0.9)
    reference = _reference(AnimateDiffSparseControlNetPipeline, pipe, model)
    expected = _latents(reference, **control)
    actual = _latents(pipe, **control)
    _assert_same(actual, expected)
    assert (actual - _latents(pipe)).abs().max() > 1e-3
    if len(indices) > 1:  # negative indices count from the end
        negative = _latents(pipe, **{**control, "controlnet_frame_indices": [indices[0], indices[1] - FRAMES]})
        torch.testing.assert_close(negative, actual, atol=0, rtol=0)


# -- context windows, FreeInit, image-to-video ----------------------------------------------------------


def _noise(frames: int, seed: int = 7) -> torch.Tensor:
    return torch.randn(1, 4, frames, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(seed))


def test_controlnet_windows_take_their_own_control_frames(control_pipe):
    """Disjoint windows (length 4, no overlap) over 8 frames: each half is a 4-frame run on its own slice."""
    video, noise = _frames(FRAMES, seed=4), _noise(FRAMES)
    windowed = _latents(
        control_pipe, latents=noise, conditioning_frames=video, context_length=4, context_overlap=0,
    )
    for half in (slice(0, 4), slice(4, 8)):
        alone = _latents(control_pipe, num_frames=4, latents=noise[:, :, half], conditioning_frames=video[half])
        torch.testing.assert_close(windowed[:, :, half], alone, atol=1e-5, rtol=0)


def test_sparsectrl_windows_see_their_keyframes_at_window_positions():
    pipe = _pipe(_sparsectrl())
    keyframe, noise = _frames(1, seed=5), _noise(FRAMES)
    windowed = _latents(
        pipe, latents=noise, conditioning_frames=keyframe, controlnet_frame_indices=[5], context_length=4,
        context_overlap=0,
    )
    second = _latents(pipe, num_frames=4, latents=noise[:, :, 4:], conditioning_frames=keyframe, controlnet_frame_indices=[1])
    torch.testing.assert_close(windowed[:, :, 4:], second, atol=1e-5, rtol=0)
    first = _latents(pipe, num_frames=4, latents=noise[:, :, :4])  # no keyframe inside: no SparseCtrl there
    torch.testing.assert_close(windowed[:, :, :4], first, atol=1e-5, rtol=0)


def test_control_video_longer_than_the_window(control_pipe):
    video = _frames(12, seed=6)
    frames = _latents(control_pipe, num_frames=12, conditioning_frames=video, context_length=FRAMES, num_inference_steps=2)
    assert frames.shape == (1, 4, 12, SIZE // 8, SIZE // 8) and torch.isfinite(frames).all()
    short = _frames(FRAMES, seed=6)
    covering = _latents(control_pipe, conditioning_frames=short, context_length=FRAMES)
    torch.testing.assert_close(covering, _latents(control_pipe, conditioning_frames=short), atol=1e-5, rtol=0)


def test_free_init_with_control(control_pipe):
    video = _frames(FRAMES, seed=8)
    control = dict(conditioning_frames=video, control_guidance_end=0.5, num_inference_steps=2)
    control_pipe.enable_free_init(num_iters=2, use_fast_sampling=True)
    try:
        refined = _latents(control_pipe, **control)
        uncontrolled = _latents(control_pipe, num_inference_steps=2)
    finally:
        control_pipe.disable_free_init()
    assert torch.isfinite(refined).all() and (refined - uncontrolled).abs().max() > 1e-3
    assert (refined - _latents(control_pipe, **control)).abs().max() > 1e-3


def test_image_to_video_keeps_its_anchor_under_control(control_pipe):
    from tests.test_pipeline import _smooth_image

    image = _smooth_image()
    video = _frames(FRAMES, seed=9)
    controlled = _latents(control_pipe, image=image, strength=0.75, conditioning_frames=video)
    plain = _latents(control_pipe, image=image, strength=0.75)
    anchor = control_pipe._encode_image(image, 1, SIZE, SIZE, "cpu", torch.float32)
    torch.testing.assert_close(controlled[:, :, 0], anchor, atol=0, rtol=0)
    assert (controlled[:, :, 1:] - plain[:, :, 1:]).abs().max() > 1e-3


def test_guess_mode_under_guidance_runs(control_pipe):
    video = _frames(FRAMES, seed=10)
    guessed = _latents(control_pipe, conditioning_frames=video, guess_mode=True, num_inference_steps=2)
    normal = _latents(control_pipe, conditioning_frames=video, num_inference_steps=2)
    assert torch.isfinite(guessed).all() and (guessed - normal).abs().max() > 1e-4


# -- SDXL -----------------------------------------------------------------------------------------------


def test_sdxl_controlnet_runs_and_scale_zero_is_no_control():
    from tests.test_pipeline_xl import _adapter as xl_adapter
    from tests.test_pipeline_xl import _xl_components

    components = _xl_components()
    controlnet = randomize_(ControlNetModel.from_unet(components["unet"]), seed=3, std=0.05).eval()
    pipe = MotionPipeline.from_components(components, xl_adapter(components["unet"]), controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "MotionPipelineXL"
    video = _frames(FRAMES, seed=11)
    args = dict(num_inference_steps=2)
    plain = _latents(pipe, **args)
    controlled = _latents(pipe, conditioning_frames=video, **args)
    off = _latents(pipe, conditioning_frames=video, controlnet_conditioning_scale=0.0, **args)
    guessed = _latents(pipe, conditioning_frames=video, guess_mode=True, **args)
    assert (controlled - plain).abs().max() > 1e-3 and torch.isfinite(guessed).all()
    torch.testing.assert_close(off, plain, atol=0, rtol=0)
    with pytest.raises(MotionkitError, match="SDXL"):  # an SD ControlNet on an SDXL base
        MotionPipeline.from_components(_xl_components(), pipe.adapter, controlnet=_controlnet(tiny_pipeline_components()["unet"], 1))
    with pytest.raises(MotionkitError, match="SparseCtrl"):
        MotionPipeline.from_components(_xl_components(), pipe.adapter, controlnet=_sparsectrl())


# -- saving and loading ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["controlnet", "multi", "sparsectrl"])
def test_save_and_reload_keeps_the_control_model(tmp_path, controlnets, kind):
    model = {"controlnet": controlnets[0], "multi": controlnets, "sparsectrl": _sparsectrl()}[kind]
    pipe = _pipe(model)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = MotionPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.controlnet) is type(pipe.controlnet)
    control = dict(conditioning_frames=[_frames(FRAMES, 1)] * 2) if kind == "multi" else dict(conditioning_frames=_frames(FRAMES, 1))
    if kind == "sparsectrl":
        control = dict(conditioning_frames=_frames(1, 1))
    args = dict(num_inference_steps=2, **control)
    torch.testing.assert_close(_latents(loaded, **args), _latents(pipe, **args), atol=0, rtol=0)


# -- bad input ------------------------------------------------------------------------------------------


def _refused(pipe, match: str, **kwargs) -> None:
    with pytest.raises(MotionkitError, match=match) as err:
        _latents(pipe, num_inference_steps=1, **kwargs)
    assert "\n" not in str(err.value)


def test_bad_control_input_is_one_line(control_pipe, controlnets, sd_unet):
    video = _frames(FRAMES, seed=12)
    _refused(control_pipe, "has 5 frames but num_frames is 8", conditioning_frames=video[:5])
    _refused(control_pipe, "start", conditioning_frames=video, control_guidance_start=0.8, control_guidance_end=0.2)
    _refused(control_pipe, "SparseCtrl", conditioning_frames=video, controlnet_frame_indices=[0])
    _refused(control_pipe, "list of frames", conditioning_frames=video[0])
    multi = _pipe(controlnets)
    _refused(multi, "2 ControlNets need 2 control videos", conditioning_frames=[video])
    _refused(multi, "controlnet_conditioning_scale has 3 values", conditioning_frames=[video, video],
             controlnet_conditioning_scale=[1.0, 1.0, 1.0])
    sparse = _pipe(_sparsectrl())
    _refused(sparse, "out of range for 8 frames", conditioning_frames=_frames(1, 0), controlnet_frame_indices=[8])
    _refused(sparse, "2 keyframe images for 1", conditioning_frames=_frames(2, 0), controlnet_frame_indices=[3])
    _refused(sparse, "twice", conditioning_frames=_frames(2, 0), controlnet_frame_indices=[7, -1])
    short_table = _pipe(_sparsectrl(table=4))
    _refused(short_table, "position table of 4: set context_length", conditioning_frames=_frames(1, 0))
    plain = _pipe(None)
    _refused(plain, "need a control model", conditioning_frames=video)
    for wrong in ([_sparsectrl(), controlnets[0]], "not a model", []):
        with pytest.raises(MotionkitError) as err:
            _pipe(wrong)
        assert "\n" not in str(err.value)

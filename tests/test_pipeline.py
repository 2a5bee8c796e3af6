"""MotionPipeline: equality with diffusers' AnimateDiffPipeline, image-to-video, context windows, FreeInit."""

import pytest
import torch
from diffusers import AnimateDiffPipeline
from diffusers import MotionAdapter as DiffusersMotionAdapter

from motionkit import MotionAdapter, MotionkitError
from motionkit.formats.keys import to_diffusers_state_dict
from motionkit.metrics import psnr
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.pipeline.schedulers import SCHEDULERS, make_scheduler
from motionkit.tiny import randomize_, tiny_pipeline_components

SIZE = 64  # 8x8 latents with the tiny VAE
FRAMES = 8
TABLE = 8


def _adapter(unet, **overrides) -> MotionAdapter:
    config = dict(preset="animatediff-v2", max_seq_length=TABLE, temporal_norm="across_frames")
    return randomize_(MotionAdapter.from_unet(unet, **{**config, **overrides}))


def _pipeline(**adapter_overrides) -> MotionPipeline:
    components = tiny_pipeline_components()
    pipe = MotionPipeline(**components, adapter=_adapter(components["unet"], **adapter_overrides))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe() -> MotionPipeline:
    return _pipeline()


def _run(pipe, seed: int = 0, **kwargs):
    args = dict(
        prompt="a cat walking", negative_prompt="blurry", num_frames=4, height=SIZE, width=SIZE,
        num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(seed),
    )
    return pipe(**{**args, **kwargs}).frames


def _animatediff_reference(pipe, scheduler) -> AnimateDiffPipeline:
    """diffusers' AnimateDiffPipeline with the same weights as ``pipe``."""
    cfg = pipe.adapter.config
    reference_adapter = DiffusersMotionAdapter(
        block_out_channels=cfg.block_out_channels,
        motion_layers_per_block=cfg.layers_per_block,
        motion_norm_num_groups=cfg.norm_num_groups,
        motion_num_attention_heads=cfg.num_attention_heads,
        use_motion_mid_block=cfg.use_mid_block,
        motion_max_seq_length=cfg.max_seq_length,
    )
    missing, unexpected = reference_adapter.load_state_dict(
        to_diffusers_state_dict(pipe.adapter.state_dict()), strict=False
    )
    assert not unexpected and all(k.endswith("pos_embed.pe") for k in missing)
    fresh = tiny_pipeline_components()  # the same seed builds the same base weights
    reference = AnimateDiffPipeline(
        vae=fresh["vae"], text_encoder=fresh["text_encoder"], tokenizer=fresh["tokenizer"], unet=fresh["unet"],
        motion_adapter=reference_adapter, scheduler=scheduler,
    )
    reference.set_progress_bar_config(disable=True)
    return reference


def test_text_to_video_equals_animatediff_pipeline(pipe):
    reference = _animatediff_reference(pipe, make_scheduler("ddim", pipe.scheduler.config))
    pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    args = dict(prompt="a cat walking", negative_prompt="blurry", num_frames=FRAMES, height=SIZE, width=SIZE,
                num_inference_steps=2, guidance_scale=7.5)
    for output_type in ("pt", "np"):
        expected = reference(**args, output_type=output_type, generator=torch.Generator().manual_seed(0)).frames
        actual = pipe(**args, output_type=output_type, generator=torch.Generator().manual_seed(0)).frames
        assert actual.shape == expected.shape
        torch.testing.assert_close(torch.as_tensor(actual), torch.as_tensor(expected), atol=1e-4, rtol=0)
    assert actual.shape == (1, FRAMES, SIZE, SIZE, 3)


@pytest.mark.parametrize("method, fast", [("butterworth", False), ("gaussian", True)])
def test_free_init_equals_animatediff_free_init(pipe, method, fast):
    # diffusers diffuses each pass to the last training step, motionkit to where the next pass starts: the
    # same timestep under trailing spacing.
    trailing = dict(timestep_spacing="trailing")
    reference = _animatediff_reference(pipe, make_scheduler("ddim", pipe.scheduler.config, **trailing))
    args = dict(prompt="a cat walking", negative_prompt="blurry", num_frames=FRAMES, height=SIZE, width=SIZE,
                num_inference_steps=3, guidance_scale=7.5, output_type="pt")
    settings = dict(num_iters=3, use_fast_sampling=fast, method=method, spatial_stop_frequency=0.3, temporal_stop_frequency=0.4)
    reference.enable_free_init(**settings)
    expected = reference(**args, generator=torch.Generator().manual_seed(0)).frames
    plain = make_scheduler("ddim", pipe.scheduler.config)
    pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config, **trailing)
    pipe.enable_free_init(**settings)
    try:
        assert pipe.free_init_enabled
        actual = pipe(**args, generator=torch.Generator().manual_seed(0)).frames
        pipe.disable_free_init()
        one_pass = pipe(**args, generator=torch.Generator().manual_seed(0)).frames
    finally:
        pipe.disable_free_init()
        pipe.scheduler = plain
    assert not pipe.free_init_enabled
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)
    assert (actual - one_pass).abs().max() > 1e-3  # the later passes changed the video


def test_same_seed_same_video_and_output_types(pipe):
    first = _run(pipe, seed=3)
    torch.testing.assert_close(_run(pipe, seed=3), first, atol=0, rtol=0)
    assert (first - _run(pipe, seed=4)).abs().max() > 1e-3
    assert first.shape == (1, 4, 3, SIZE, SIZE)
    pil = _run(pipe, seed=3, output_type="pil", num_frames=2)
    assert len(pil) == 1 and len(pil[0]) == 2 and pil[0][0].size == (SIZE, SIZE)
    latents = _run(pipe, seed=3, output_type="latent", num_frames=2)
    assert latents.shape == (1, 4, 2, SIZE // 8, SIZE // 8)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_runs(pipe, name):
    pipe.scheduler = make_scheduler(name, pipe.scheduler.config)
    try:
        frames = _run(pipe, num_frames=4)
    finally:
        pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    assert frames.shape == (1, 4, 3, SIZE, SIZE) and torch.isfinite(frames).all()


def test_callback_on_step_end_runs_every_step(pipe):
    seen = []

    def callback(p, i, t, tensors):
        seen.append((i, int(t), tuple(tensors["latents"].shape)))
        return {"latents": tensors["latents"]}

    _run(pipe, num_frames=2, num_inference_steps=3, callback_on_step_end=callback)
    assert [s[0] for s in seen] == [0, 1, 2]
    assert all(shape == (1, 4, 2, SIZE // 8, SIZE // 8) for *_, shape in seen)


def _vae_reconstruction(pipe, image) -> torch.Tensor:
    from motionkit.pipeline.image_input import prepare_image

    pixels = prepare_image(image, SIZE, SIZE, pipe.image_processor)
    with torch.no_grad():
        latent = pipe.vae.encode(pixels).latent_dist.mode()
        decoded = pipe.vae.decode(latent).sample
    return ((decoded / 2 + 0.5).clamp(0, 1))[0]


def _smooth_image(height: int = 90, width: int = 140) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    return torch.stack([x, y, (x + y) / 2])  # [3, H, W] in [0, 1], wider than tall: cropped to square


def test_image_to_video_training_free_reproduces_first_frame(pipe):
    image = _smooth_image()
    frames = _run(pipe, image=image, strength=0.8, num_frames=FRAMES)
    assert frames.shape == (1, FRAMES, 3, SIZE, SIZE)
    reference = _vae_reconstruction(pipe, image)
    assert psnr(frames[0, 0], reference) > 30
    assert psnr(frames[0, -1], reference) < psnr(frames[0, 0], reference)


def test_image_to_video_svd_knobs_are_accepted(pipe):
    image = _smooth_image()
    plain = _run(pipe, image=image)
    knobs = _run(pipe, image=image, noise_aug_strength=0.1, min_guidance_scale=1.0, max_guidance_scale=3.0)
    assert knobs.shape == plain.shape and (knobs - plain).abs().max() > 1e-4
    assert psnr(knobs[0, 0], _vae_reconstruction(pipe, image)) > 30


def test_trained_image_conditioning_changes_the_output():
    pipe = _pipeline(image_cond_channels=5)
    image = _smooth_image()  # trained mode does not anchor frame 0, so the branch decides every frame
    conditioned = _run(pipe, image=image, motion_scale=2)
    with torch.no_grad():
        pipe.adapter.image_cond_conv.weight.zero_()  # a branch of zeros adds nothing: the plain path
    unconditioned = _run(pipe, image=image, motion_scale=2)
    assert (conditioned - unconditioned).abs().max() > 1e-3
    with pytest.raises(MotionkitError, match="motion_scale"):
        _run(pipe, image=image, motion_scale=9)


def test_bad_image_and_size_inputs_are_one_line_errors(pipe, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is text, not pixels")
    for bad in (not_an_image, tmp_path / "missing.png"):
        with pytest.raises(MotionkitError) as err:
            _run(pipe, image=bad)
        assert "\n" not in str(err.value) and bad.name in str(err.value)
    with pytest.raises(MotionkitError, match="multiples of 8"):
        _run(pipe, height=60)
    with pytest.raises(MotionkitError, match="image"):
        _run(pipe, strength=0.5)


@pytest.mark.parametrize("loop", [False, True])
def test_frames_beyond_the_position_table_use_context_windows(pipe, loop, caplog):
    num_frames = 20
    covered = set()
    with caplog.at_level("WARNING"):
        frames = _run(pipe, num_frames=num_frames, num_inference_steps=1, guidance_scale=1.0, context_loop=loop)
    assert frames.shape == (1, num_frames, 3, SIZE, SIZE) and torch.isfinite(frames).all()
    assert "context windows of 8" in caplog.text
    from motionkit.pipeline.context import ContextWindows

    for window in ContextWindows(TABLE, 4, loop=loop).windows(num_frames):
        assert len(window) <= TABLE
        covered.update(window)
    assert covered == set(range(num_frames))
    with pytest.raises(MotionkitError, match="position table"):
        _run(pipe, num_frames=num_frames, context_length=TABLE + 4)


def test_table_length_window_equals_no_context(pipe):
    plain = _run(pipe, num_frames=TABLE)
    windowed = _run(pipe, num_frames=TABLE, context_length=TABLE)
    torch.testing.assert_close(windowed, plain, atol=1e-5, rtol=0)


def test_context_windows_work_with_prompt_embeds(pipe):
    embeds = torch.randn(1, 77, pipe.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(0))
    frames = pipe(
        prompt_embeds=embeds, negative_prompt_embeds=torch.zeros_like(embeds), num_frames=12, height=SIZE,
        width=SIZE, num_inference_steps=1, context_length=6, context_overlap=2, context_stride=2, output_type="pt",
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert frames.shape == (1, 12, 3, SIZE, SIZE)


def test_free_init_changes_output_and_disabling_restores_it(pipe):
    plain = _run(pipe, num_frames=4)
    pipe.enable_free_init(num_iters=2, method="gaussian", use_fast_sampling=True)
    try:
        refined = _run(pipe, num_frames=4)
    finally:
        pipe.disable_free_init()
    assert refined.shape == plain.shape and (refined - plain).abs().max() > 1e-3
    torch.testing.assert_close(_run(pipe, num_frames=4), plain, atol=0, rtol=0)


def test_eject_gives_back_the_plain_unet():
    pipe = _pipeline()
    unet = pipe.eject()
    assert not any(module._forward_hooks for module in unet.modules())
    with pytest.raises(MotionkitError, match="ejected"):
        _run(pipe)


def test_from_pretrained_reads_a_base_folder(tmp_path):
    from diffusers import StableDiffusionPipeline

    components = tiny_pipeline_components()
    base = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    base.save_pretrained(tmp_path / "base")
    adapter = _adapter(components["unet"])
    pipe = MotionPipeline.from_pretrained(tmp_path / "base", adapter=adapter)
    assert isinstance(pipe, MotionPipeline) and pipe.adapter is adapter
    pipe.set_progress_bar_config(disable=True)
    assert _run(pipe, num_frames=2).shape == (1, 2, 3, SIZE, SIZE)

"""Prompt travel and FreeNoise: equality with diffusers' AnimateDiffPipeline (enable_free_noise, prompt dicts),
per-frame embeddings across context windows, refusal of malformed schedules."""

import pytest
import torch
from diffusers import AnimateDiffPipeline
from diffusers import MotionAdapter as DiffusersMotionAdapter

from motionkit import MotionAdapter, MotionkitError
from motionkit.formats.keys import to_diffusers_state_dict
from motionkit.pipeline.free_noise import FreeNoise
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.pipeline.prompt_schedule import as_schedule, interpolate, parse_schedule, resolve_key
from motionkit.pipeline.schedulers import make_scheduler
from motionkit.tiny import randomize_, tiny_pipeline_components

SIZE = 64
TABLE = 8


def _pipeline(**overrides) -> MotionPipeline:
    components = tiny_pipeline_components()
    config = dict(preset="animatediff-v2", max_seq_length=TABLE, temporal_norm="across_frames")
    adapter = randomize_(MotionAdapter.from_unet(components["unet"], **{**config, **overrides}))
    pipe = MotionPipeline(**components, adapter=adapter)
    pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe() -> MotionPipeline:
    return _pipeline()


def _reference(pipe: MotionPipeline) -> AnimateDiffPipeline:
    cfg = pipe.adapter.config
    adapter = DiffusersMotionAdapter(
        block_out_channels=cfg.block_out_channels, motion_layers_per_block=cfg.layers_per_block,
        motion_norm_num_groups=cfg.norm_num_groups, motion_num_attention_heads=cfg.num_attention_heads,
        use_motion_mid_block=cfg.use_mid_block, motion_max_seq_length=cfg.max_seq_length,
    )
    adapter.load_state_dict(to_diffusers_state_dict(pipe.adapter.state_dict()), strict=False)
    fresh = tiny_pipeline_components()
    reference = AnimateDiffPipeline(
        vae=fresh["vae"], text_encoder=fresh["text_encoder"], tokenizer=fresh["tokenizer"], unet=fresh["unet"],
        motion_adapter=adapter, scheduler=make_scheduler("ddim", pipe.scheduler.config),
    )
    reference.set_progress_bar_config(disable=True)
    return reference


ARGS = dict(height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=7.5, output_type="pt")


@pytest.mark.parametrize(
    "frames, length, stride, weighting, noise_type",
    [(12, 8, 4, "pyramid", "shuffle_context"), (14, 6, 2, "flat", "random"), (12, 8, 2, "delayed_reverse_sawtooth", "shuffle_context")],
)
def test_free_noise_with_prompt_travel_equals_diffusers(pipe, frames, length, stride, weighting, noise_type):
    reference = _reference(pipe)
    reference.enable_free_noise(context_length=length, context_stride=stride, weighting_scheme=weighting, noise_type=noise_type)
    pipe.enable_free_noise(context_length=length, context_stride=stride, weighting_scheme=weighting, noise_type=noise_type)
    try:
        prompt = {0: "a cat walking", 5: "a dog running", 9: "a bird"}
        negative = {0: "blurry", 7: "dark"}
        expected = reference(prompt=prompt, negative_prompt=negative, num_frames=frames, generator=torch.Generator().manual_seed(0), **ARGS).frames
        actual = pipe(prompt=prompt, negative_prompt=negative, num_frames=frames, generator=torch.Generator().manual_seed(0), **ARGS).frames
    finally:
        pipe.disable_free_noise()
    assert actual.shape == expected.shape == (1, frames, 3, SIZE, SIZE)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def _capture(pipe: MotionPipeline) -> tuple[list, object]:
    """Record the encoder_hidden_states and frame count of every motion-UNet call."""
    seen: list[tuple[int, torch.Tensor]] = []
    original = pipe.motion_unet.forward

    def forward(sample, timestep, encoder_hidden_states, **kwargs):
        seen.append((sample.shape[2], encoder_hidden_states.clone()))
        return original(sample, timestep, encoder_hidden_states, **kwargs)

    pipe.motion_unet.forward = forward
    return seen, original


def _encode(pipe: MotionPipeline, texts: list[str]) -> torch.Tensor:
    return pipe.encode_prompt(texts, torch.device("cpu"), 1, False)[0]


@pytest.mark.parametrize("loop", [False, True])
def test_each_context_window_gets_its_own_frames_embeddings(pipe, loop):
    frames = 10
    seen, original = _capture(pipe)
    try:
        pipe(prompt={0: "a cat", -1: "a dog"}, negative_prompt="blurry", num_frames=frames, context_length=4,
             context_overlap=2, context_loop=loop, generator=torch.Generator().manual_seed(0), **{**ARGS, "num_inference_steps": 1})
    finally:
        pipe.motion_unet.forward = original
    cat, dog = _encode(pipe, ["a cat", "a dog"]).split(1)
    negative = _encode(pipe, ["blurry"])
    per_frame = interpolate([0, frames - 1], torch.cat([cat, dog]), frames)
    windows = pipe._context(frames, 4, 2, 1, loop).windows(frames)
    assert len(seen) == len(windows) and any(w[0] > w[-1] for w in windows) == loop  # a loop wraps around
    for (count, embeds), window in zip(seen, windows):
        assert count == len(window)
        torch.testing.assert_close(embeds[:count], negative.expand(count, -1, -1))  # the negative half first
        torch.testing.assert_close(embeds[count:], per_frame[window], atol=1e-6, rtol=0)


def test_a_one_key_schedule_is_the_plain_prompt(pipe):
    args = dict(negative_prompt="blurry", num_frames=8, generator=torch.Generator().manual_seed(1), **ARGS)
    plain = pipe(prompt="a cat walking", **args).frames
    args["generator"] = torch.Generator().manual_seed(1)
    scheduled = pipe(prompt={0: "a cat walking"}, **args).frames
    torch.testing.assert_close(scheduled, plain, atol=1e-5, rtol=0)


def test_interpolation_holds_outside_the_keys_and_slerp_keeps_endpoints():
    values = torch.randn(2, 3, 5)
    out = interpolate([2, 6], values, 9)
    for frame in (0, 1, 2):
        torch.testing.assert_close(out[frame], values[0])
    for frame in (6, 7, 8):
        torch.testing.assert_close(out[frame], values[1])
    torch.testing.assert_close(out[4], (values[0] + values[1]) / 2)
    curved = interpolate([0, 4], values, 5, "slerp")
    torch.testing.assert_close(curved[0], values[0])
    torch.testing.assert_close(curved[4], values[1], atol=1e-5, rtol=0)
    expected_norm = (values[0].norm(dim=-1) + values[1].norm(dim=-1)) / 2
    torch.testing.assert_close(curved[2].norm(dim=-1), expected_norm, atol=1e-5, rtol=0)
    assert (curved[2] - out[4]).abs().max() > 1e-3  # not the straight line


def test_keys_resolve_frames_fractions_and_from_the_end():
    assert [resolve_key(k, 17) for k in (0, 5, -1, -17, 0.5, 1.0, "50%", "25%", "-2", "0.25")] == [0, 5, 16, 0, 8, 16, 8, 4, 15, 4]
    schedule = parse_schedule("0: a cat | 50%@1.5: a dog\n-1: 'a bird'")
    assert schedule.prompts == ["a cat", "a dog", "a bird"] and schedule.weights == [1.0, 1.5, 1.0]
    assert schedule.frames(9) == [0, 4, 8]
    assert as_schedule(["0:a cat", "16:a dog"]).frames(17) == [0, 16]
    assert as_schedule([{"frame": 0, "prompt": "a"}, {"frame": "-1", "prompt": "b", "weight": 0.5}]).weights == [1.0, 0.5]
    assert as_schedule("a cat") is None and as_schedule(["a cat", "a dog"]) is None  # plain prompts


@pytest.mark.parametrize(
    "schedule, message",
    [
        ({0: "a", 15: "b", -1: "c"}, "both fall on frame 15"),
        ({0: "a", 16: "b"}, "past the video's 16 frames"),
        ({0: "a", 8: "b", 4: "c"}, "comes after key 8"),
        ({0: "a", 1.5: "b"}, "not a fraction"),
        ({"x": "a"}, "bad prompt key"),
        ("0: a | 5%%: b", "bad prompt key"),
        ("a cat | 4: b", "bad prompt entry"),
        ({}, "empty prompt schedule"),
    ],
)
def test_malformed_schedules_are_one_line(pipe, schedule, message):
    with pytest.raises(MotionkitError, match=message) as err:
        pipe(prompt=parse_schedule(schedule) if isinstance(schedule, str) else schedule, num_frames=16, **ARGS)
    assert "\n" not in str(err.value)


def test_weights_scale_from_the_empty_prompt(pipe):
    from motionkit.pipeline.prompt_schedule import encode_schedule
    from motionkit.pipeline.motion_pipeline import _PromptRequest

    request = _PromptRequest({}, None, None, None, 1, False, None, None, SIZE, SIZE, torch.device("cpu"))
    embeds, _ = encode_schedule(pipe._encode_text, request, as_schedule({0: "a cat", "4@0": "a dog", "8@2": "a bird"}), None, 9)
    empty, cat, dog, bird = _encode(pipe, ["", "a cat", "a dog", "a bird"]).split(1)
    torch.testing.assert_close(embeds[0], cat[0])
    torch.testing.assert_close(embeds[4], empty[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(embeds[8], (empty + 2 * (bird - empty))[0], atol=1e-5, rtol=0)


def test_free_noise_noise_types():
    shape = (1, 2, 13, 3, 3)
    repeated = FreeNoise(4, 2, noise_type="repeat_context").noise(shape, torch.Generator().manual_seed(0), "cpu", torch.float32)
    torch.testing.assert_close(repeated[:, :, 4:8], repeated[:, :, :4])
    torch.testing.assert_close(repeated[:, :, 12], repeated[:, :, 0])
    shuffled = FreeNoise(4, 2).noise(shape, torch.Generator().manual_seed(0), "cpu", torch.float32)
    plain = FreeNoise(4, 2, noise_type="random").noise(shape, torch.Generator().manual_seed(0), "cpu", torch.float32)
    torch.testing.assert_close(shuffled[:, :, :4], plain[:, :, :4])
    for start in range(4, 13, 2):  # every later block is a permutation of the block 4 frames before it
        block = [shuffled[:, :, f] for f in range(start, min(13, start + 2))]
        source = [shuffled[:, :, f] for f in range(start - 4, start - 2)]
        matches = [[i for i, s in enumerate(source) if torch.equal(b, s)] for b in block]
        assert all(len(m) == 1 for m in matches) and len({m[0] for m in matches}) == len(block)
    with pytest.raises(MotionkitError, match="context_stride"):
        FreeNoise(4, 5)


def test_free_noise_composes_with_loops_windows_free_init_and_long_videos(pipe):
    pipe.enable_free_noise(context_length=TABLE, context_stride=4)
    try:
        long = pipe(prompt={0: "a cat", "50%": "a dog"}, num_frames=3 * TABLE, generator=torch.Generator().manual_seed(0), **{**ARGS, "num_inference_steps": 1}).frames
        assert long.shape[1] == 3 * TABLE and torch.isfinite(long).all()
        looped = pipe(prompt="a cat", num_frames=12, context_loop=True, generator=torch.Generator().manual_seed(0), **ARGS).frames
        straight = pipe(prompt="a cat", num_frames=12, generator=torch.Generator().manual_seed(0), **ARGS).frames
        assert (looped - straight).abs().max() > 1e-4  # the motion windows wrapped around
        windowed = pipe(prompt="a cat", num_frames=12, context_length=TABLE, context_overlap=4, generator=torch.Generator().manual_seed(0), **ARGS).frames
        assert torch.isfinite(windowed).all()
        pipe.enable_free_init(num_iters=2)
        twice = pipe(prompt="a cat", num_frames=12, generator=torch.Generator().manual_seed(0), **ARGS).frames
        assert (twice - straight).abs().max() > 1e-4
    finally:
        pipe.disable_free_init()
        pipe.disable_free_noise()
    assert all(m.frame_windows is None for m in pipe.adapter.modules() if hasattr(m, "frame_windows"))
    with pytest.raises(MotionkitError, match="position table"):
        pipe.enable_free_noise(context_length=TABLE + 1)


def test_sparsectrl_windows_take_their_own_prompts():
    """Disjoint windows over 8 frames, a cat for frames 0-3 and a dog from 4: each window is a 4-frame run of
    its own prompt, the second with its keyframe, so the control model got each window's embeddings."""
    from tests.test_control import _frames, _latents, _noise, _pipe, _sparsectrl

    pipe = _pipe(_sparsectrl())
    keyframe, noise = _frames(1, seed=5), _noise(8)
    schedule = {0: "a cat walking", 3: "a cat walking", 4: "a dog running"}
    windowed = _latents(
        pipe, prompt=schedule, latents=noise, conditioning_frames=keyframe, controlnet_frame_indices=[5],
        context_length=4, context_overlap=0,
    )
    dog = _latents(pipe, prompt="a dog running", num_frames=4, latents=noise[:, :, 4:], conditioning_frames=keyframe, controlnet_frame_indices=[1])
    torch.testing.assert_close(windowed[:, :, 4:], dog, atol=1e-5, rtol=1e-5)
    cat = _latents(pipe, prompt="a cat walking", num_frames=4, latents=noise[:, :, :4])
    torch.testing.assert_close(windowed[:, :, :4], cat, atol=1e-5, rtol=1e-5)


def test_sdxl_schedules_interpolate_the_pooled_embeddings_too():
    from tests.test_pipeline_xl import _adapter as xl_adapter, _xl_components

    components = _xl_components()
    xl = MotionPipeline.from_components(components, xl_adapter(components["unet"]))
    xl.set_progress_bar_config(disable=True)
    seen: list[dict] = []
    original = xl.motion_unet.forward

    def forward(sample, timestep, encoder_hidden_states, added_cond_kwargs=None, **kwargs):
        seen.append({k: v.clone() for k, v in added_cond_kwargs.items()})
        return original(sample, timestep, encoder_hidden_states, added_cond_kwargs=added_cond_kwargs, **kwargs)

    xl.motion_unet.forward = forward
    args = dict(num_frames=4, generator=torch.Generator().manual_seed(0), **{**ARGS, "num_inference_steps": 1})
    travelled = xl(prompt={0: "a cat", -1: "a dog"}, **args).frames
    pooled = seen[-1]["text_embeds"]
    assert pooled.shape[0] == 2 * 4 and not torch.allclose(pooled[4], pooled[7])  # per frame, cat to dog
    torch.testing.assert_close(seen[-1]["time_ids"], seen[-1]["time_ids"][:1].expand(8, -1))
    xl.motion_unet.forward = original
    args["generator"] = torch.Generator().manual_seed(0)
    plain = xl(prompt={0: "a cat"}, **args).frames
    args["generator"] = torch.Generator().manual_seed(0)
    torch.testing.assert_close(plain, xl(prompt="a cat", **args).frames, atol=1e-5, rtol=0)
    assert (travelled - plain).abs().max() > 1e-4

"""Frame-correlated starting noise and offset noise (motionkit.noise_prior): their statistics, the pipeline's
and the trainers' use of them, and refusal of correlations and offsets outside [0, 1)."""

from __future__ import annotations

import pytest
import torch

from motionkit import MotionAdapter, MotionkitError
from motionkit.noise_prior import (
    check_frame_noise_means,
    check_noise_correlation,
    check_noise_offset,
    correlate_frames,
    default_frame_noise_means,
    for_text_to_video,
    noise_prior,
    with_frame_means,
    with_noise_offset,
)
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.tiny import randomize_, tiny_pipeline_components
from motionkit.train.trainer import Trainer
from tests.test_train import PatternClips, reset_accelerate, tiny_base, tiny_config  # noqa: F401


def test_zero_correlation_returns_the_draw_itself():
    noise = torch.randn(2, 4, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    assert correlate_frames(noise, 0.0) is noise
    single = noise[:, :, :1]
    assert correlate_frames(single, 0.7) is single  # one frame has nothing to share with


@pytest.mark.parametrize("rho", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("frames", [2, 8, 16])
def test_frames_correlate_by_rho_and_stay_standard_normal(rho, frames):
    noise = torch.randn(40000, 1, frames, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mixed = correlate_frames(noise, rho).reshape(40000, frames)
    assert mixed.mean(0).abs().max() < 0.03
    torch.testing.assert_close(mixed.var(0), torch.ones(frames, dtype=torch.float64), atol=0.03, rtol=0)
    corr = torch.corrcoef(mixed.T)
    off_diagonal = corr[~torch.eye(frames, dtype=torch.bool)]
    assert (off_diagonal - rho).abs().max() < 0.03
    # frames are exchangeable: the shared part is the same for every frame
    assert (mixed - mixed.mean(1, keepdim=True)).std() < noise.reshape(40000, frames).std()


def test_a_declared_correlation_is_text_to_video_s_alone():
    assert for_text_to_video(0.7, conditioned=False) == 0.7
    assert for_text_to_video(0.7, conditioned=True) == 0.0  # an image or a source video samples independent noise


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_correlations_outside_zero_to_one_are_refused(bad):
    with pytest.raises(MotionkitError, match=r"noise_correlation must lie in \[0, 1\)"):
        check_noise_correlation(bad)


def _pipe() -> MotionPipeline:
    components = tiny_pipeline_components()
    adapter = randomize_(MotionAdapter.from_unet(components["unet"], preset="animatediff-v2", max_seq_length=8))
    pipe = MotionPipeline(**components, adapter=adapter)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_pipeline_correlates_the_drawn_noise_and_leaves_given_latents_alone():
    pipe = _pipe()
    args = dict(prompt="a cat", num_frames=4, height=64, width=64, num_inference_steps=2, output_type="latent")
    run = lambda seed=0, **kw: pipe(**args, **kw, generator=torch.Generator().manual_seed(seed)).frames  # noqa: E731
    default = run()
    torch.testing.assert_close(run(noise_correlation=0.0), default, atol=0, rtol=0)
    correlated = run(noise_correlation=0.6)
    assert (correlated - default).abs().max() > 1e-3
    # The same as drawing diffusers' noise with that generator and correlating it by hand.
    drawn = torch.randn((1, 4, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(run(latents=correlate_frames(drawn, 0.6)), correlated, atol=1e-6, rtol=0)
    # Latents a caller gives are used as they are.
    torch.testing.assert_close(run(latents=drawn, noise_correlation=0.6), run(latents=drawn), atol=0, rtol=0)
    with pytest.raises(MotionkitError, match="noise_correlation"):
        run(noise_correlation=1.0)


def test_image_to_video_noise_is_correlated_too():
    pipe = _pipe()
    image = torch.rand(3, 64, 64)
    args = dict(prompt="a cat", image=image, strength=0.6, num_frames=4, height=64, width=64, num_inference_steps=3,
                output_type="latent")
    run = lambda **kw: pipe(**args, **kw, generator=torch.Generator().manual_seed(0)).frames  # noqa: E731
    assert (run(noise_correlation=0.5) - run()).abs().max() > 1e-3


def test_zero_frame_means_are_taken_out_and_the_rest_stays_standard_normal():
    noise = torch.randn(3000, 4, 2, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    centred = with_frame_means(noise, "zero")
    assert centred.shape == noise.shape
    assert centred.mean(dim=(-2, -1)).abs().max() < 1e-12  # every frame and channel: spatial mean 0
    assert abs(float(centred.var()) - 1.0) < 0.01  # rescaled: unit variance, as the noise the UNet trained on
    # What is taken out is the spatial mean alone: the residual correlates almost fully with the draw.
    assert float(torch.corrcoef(torch.stack([centred.flatten(), noise.flatten()]))[0, 1]) > 0.99
    assert with_frame_means(noise, "drawn") is noise
    single = noise[..., :1, :1]
    assert with_frame_means(single, "zero") is single  # a 1x1 latent has no mean to take out


def test_shared_frame_means_are_frame_0_s_and_each_frame_stays_standard_normal():
    noise = torch.randn(20000, 1, 4, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    shared = with_frame_means(noise, "shared")
    means = shared.mean(dim=(-2, -1))
    torch.testing.assert_close(means, means[:, :, :1].expand_as(means), atol=1e-12, rtol=0)
    torch.testing.assert_close(means[:, :, 0], noise.mean(dim=(-2, -1))[:, :, 0], atol=1e-12, rtol=0)
    # Every frame's noise keeps its distribution: unit variance per frame, the mean's variance 1/(H*W).
    torch.testing.assert_close(shared.var(dim=(0, 1, 3, 4)), torch.ones(4, dtype=torch.float64), atol=0.02, rtol=0)
    assert abs(float(means[:, :, 1].var()) * 16 - 1.0) < 0.05
    # What is not the mean is the draw itself.
    torch.testing.assert_close(shared - means[..., None, None], noise - noise.mean(dim=(-2, -1), keepdim=True))


def test_frame_noise_means_default_by_job_and_refuse_unknown_modes():
    assert default_frame_noise_means(None, conditioned=True) == "zero"
    assert default_frame_noise_means(None, conditioned=False) == "drawn"  # diffusers' noise: equal videos
    assert default_frame_noise_means("shared", conditioned=True) == "shared"
    with pytest.raises(MotionkitError, match="frame_noise_means 'mean' is not one of drawn, shared, zero"):
        check_frame_noise_means("mean")


def _start_noise(pipe: MotionPipeline) -> list[torch.Tensor]:
    """Spy on the scheduler: the noise each ``add_noise`` call mixes in."""
    seen: list[torch.Tensor] = []
    original = pipe.scheduler.add_noise

    def spy(original_samples, noise, timesteps):
        seen.append(noise.clone())
        return original(original_samples, noise, timesteps)

    pipe.scheduler.add_noise = spy
    return seen


def test_image_to_video_noise_loses_its_frame_means_and_given_latents_stay():
    pipe = _pipe()
    seen = _start_noise(pipe)
    image = torch.rand(3, 64, 64)
    args = dict(prompt="a cat", image=image, strength=0.6, num_frames=4, height=64, width=64, num_inference_steps=3,
                output_type="latent")
    run = lambda **kw: pipe(**args, **kw, generator=torch.Generator().manual_seed(0)).frames  # noqa: E731
    default = run()
    start = seen[0]  # the first call starts every frame from the noised image
    assert start.shape == (1, 4, 4, 8, 8) and start.mean(dim=(-2, -1)).abs().max() < 1e-6
    seen.clear()
    kept = run(frame_noise_means="drawn")
    assert seen[0].mean(dim=(-2, -1)).abs().max() > 1e-2 and (kept - default).abs().max() > 1e-3
    torch.testing.assert_close(with_frame_means(seen[0], "zero"), start, atol=1e-6, rtol=0)  # the same draw, centred
    # Latents a caller gives are used as they are.
    drawn = torch.randn((1, 4, 4, 8, 8), generator=torch.Generator().manual_seed(5))
    seen.clear()
    run(latents=drawn)
    torch.testing.assert_close(seen[0], drawn, atol=0, rtol=0)
    with pytest.raises(MotionkitError, match="frame_noise_means"):
        run(frame_noise_means="none")


def test_text_to_video_draws_diffusers_noise_unless_means_are_shared():
    pipe = _pipe()
    args = dict(prompt="a cat", num_frames=4, height=64, width=64, num_inference_steps=2, output_type="latent")
    run = lambda **kw: pipe(**args, **kw, generator=torch.Generator().manual_seed(0)).frames  # noqa: E731
    default = run()
    torch.testing.assert_close(run(frame_noise_means="drawn"), default, atol=0, rtol=0)
    drawn = torch.randn((1, 4, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    shared = run(frame_noise_means="shared", noise_correlation=0.5)
    # The same as correlating the draw, then giving every frame frame 0's mean, by hand.
    by_hand = with_frame_means(correlate_frames(drawn, 0.5), "shared")
    torch.testing.assert_close(run(latents=by_hand), shared, atol=1e-6, rtol=0)
    assert (shared - run(noise_correlation=0.5)).abs().max() > 1e-4


def test_free_init_draws_its_fresh_noise_from_the_prior():
    # Stop frequency 0 keeps no low frequency: the second pass starts from the fresh draw alone, which must be
    # the generator's next draw shaped by the same prior as the first pass's noise.
    pipe = _pipe()
    args = dict(prompt="a cat", num_frames=4, height=64, width=64, num_inference_steps=2, output_type="latent")
    prior = dict(noise_correlation=0.6, frame_noise_means="shared")
    pipe.enable_free_init(num_iters=2, spatial_stop_frequency=0.0)
    try:
        refined = pipe(**args, **prior, generator=torch.Generator().manual_seed(0)).frames
    finally:
        pipe.disable_free_init()
    generator = torch.Generator().manual_seed(0)
    torch.randn((1, 4, 4, 8, 8), generator=generator)  # the first pass's draw
    fresh = noise_prior(torch.randn((1, 4, 4, 8, 8), generator=generator), 0.6, "shared")
    torch.testing.assert_close(refined, pipe(**args, latents=fresh).frames, atol=1e-4, rtol=0)  # FFT round trip
    # Statistically: frames correlate by the prior's correlation and share frame 0's means.
    big = noise_prior(torch.randn(64, 4, 8, 8, 8, generator=generator), 0.6, "shared")
    flat = big.permute(2, 0, 1, 3, 4).reshape(8, -1)
    assert abs(torch.corrcoef(flat)[0, 1:].mean().item() - 0.6) < 0.05
    means = big.mean(dim=(-2, -1))
    torch.testing.assert_close(means, means[:, :, :1].expand_as(means), atol=1e-5, rtol=0)


def trainer_noise_beside_plain(tmp_path, key: str, value: float, bad: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Training noise of two clips (fixed generators) with ``key=value`` and without; the timesteps of both
    must be equal (the option draws after them or not at all); ``bad`` must be refused in one line."""
    reset_accelerate()
    with pytest.raises(MotionkitError, match=key):
        tiny_config(tmp_path, **{key: bad})
    plain = Trainer(tiny_config(tmp_path / "plain"), base=tiny_base(), dataset=PatternClips()).setup()
    reset_accelerate()
    other = Trainer(tiny_config(tmp_path / key, **{key: value}), base=tiny_base(), dataset=PatternClips()).setup()
    latents = torch.zeros(2, 4, 4, 8, 8)
    gens = lambda: [torch.Generator().manual_seed(s) for s in (3, 4)]  # noqa: E731
    drawn, t_plain = plain._noise_and_timesteps(latents, gens())
    changed, t_other = other._noise_and_timesteps(latents, gens())
    torch.testing.assert_close(t_plain, t_other, atol=0, rtol=0)  # the same random stream otherwise
    return drawn, changed


def test_training_noise_is_correlated_per_clip(tmp_path):
    independent, correlated = trainer_noise_beside_plain(tmp_path, "noise_correlation", 0.5, bad=1.0)
    torch.testing.assert_close(correlated, correlate_frames(independent, 0.5), atol=1e-6, rtol=0)


def test_noise_offset_is_one_value_per_sample_and_channel_and_zero_draws_nothing():
    noise = torch.randn(64, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    assert with_noise_offset(noise, 0.0, g) is noise
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(1).get_state())  # nothing drawn
    offset = with_noise_offset(noise, 0.1, torch.Generator().manual_seed(1)) - noise
    assert offset.shape == noise.shape
    per_channel = offset[:, :, :1, :1]
    torch.testing.assert_close(offset, per_channel.expand_as(offset))  # the same at every pixel
    assert 0.07 < per_channel.std().item() < 0.13  # 0.1 times a standard normal, over 256 values
    # One clip [C, F, H, W]: one value per channel, the same in every frame.
    clip = torch.zeros(4, 6, 8, 8)
    moved = with_noise_offset(clip, 0.5, torch.Generator().manual_seed(2), channel_dim=0)
    assert torch.equal(moved, moved[:, :1, :1, :1].expand_as(moved)) and moved[:, 0, 0, 0].abs().min() > 0


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0])
def test_noise_offsets_outside_zero_to_one_are_refused(bad):
    with pytest.raises(MotionkitError, match="noise_offset must lie in") as info:
        check_noise_offset(bad)
    assert "\n" not in str(info.value)


def test_training_noise_gets_its_clip_s_offset(tmp_path):
    drawn, shifted = trainer_noise_beside_plain(tmp_path, "noise_offset", 0.1, bad=1.5)
    difference = shifted - drawn
    assert difference.abs().max() > 0
    # One value per clip and channel, the same at every frame and pixel.
    torch.testing.assert_close(difference, difference[:, :, :1, :1, :1].expand_as(difference), atol=1e-6, rtol=0)

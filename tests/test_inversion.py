"""Image-to-video starting noise from the image's DDIM inversion (motionkit.pipeline.inversion)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from motionkit.errors import MotionkitError
from motionkit.pipeline.inversion import check_image_inversion, invert_image, mix_inverted


def _alphas() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def test_a_constant_noise_prediction_inverts_to_itself():
    """With a model that predicts the same noise everywhere, DDIM's clean estimate never moves: the inverted
    noise is that noise, whatever the schedule."""
    eps = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    latent = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    for timesteps in (torch.tensor([761, 721, 681, 41, 1]), torch.tensor([999]), torch.arange(980, 0, -20)):
        torch.testing.assert_close(invert_image(lambda x, t: eps, latent, _alphas(), timesteps), eps)


def test_the_inversion_walks_the_schedule_upwards_from_the_clean_latent():
    seen = []
    latent = torch.zeros(1, 4, 2, 2)

    def record(x: torch.Tensor, t: int) -> torch.Tensor:
        seen.append(t)
        return torch.zeros_like(x)

    invert_image(record, latent, _alphas(), torch.tensor([801.0, 601.0, 401.0, 201.0, 1.0]))
    assert seen == [0, 1, 201, 401, 601]  # each step predicts at the point it stands on, then goes up
    with pytest.raises(MotionkitError, match="non-empty 1-D"):
        invert_image(record, latent, _alphas(), torch.tensor([]))


def test_mixing_keeps_unit_variance_and_its_ends():
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 4, 8, 32, 32, generator=generator)
    inverted = torch.randn(4, 4, 32, 32, generator=generator)
    assert mix_inverted(noise, inverted, 0.0) is noise
    every = mix_inverted(noise, inverted, 1.0)
    torch.testing.assert_close(every, inverted.unsqueeze(2).expand_as(noise))
    half = mix_inverted(noise, inverted, 0.5)
    assert abs(float(half.std()) - 1.0) < 0.02
    # Frames share exactly the inverted share of their variance.
    frames = half.transpose(1, 2).reshape(4, 8, -1)
    correlation = torch.corrcoef(torch.stack([frames[:, 0].flatten(), frames[:, 5].flatten()]))[0, 1]
    assert abs(float(correlation) - 0.5) < 0.03


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, "much", None])
def test_bad_shares_are_refused_in_one_line(bad):
    with pytest.raises(MotionkitError, match="image_inversion must") as caught:
        check_image_inversion(bad)
    assert "\n" not in str(caught.value)
    with pytest.raises(MotionkitError, match="^--image-inversion must"):
        check_image_inversion(bad, name="--image-inversion")
    assert check_image_inversion(0) == 0.0 and check_image_inversion("0.25") == 0.25


@pytest.fixture(scope="module")
def family_pipelines(family_dir):
    """The tiny family's base with its adapter and with a fresh (identity) copy: the image model alone."""
    from motionkit.adapter import MotionAdapter
    from motionkit.commands.animate import assemble_pipeline
    from motionkit.family import TinyFamily
    from motionkit.pipeline.loading import load_adapter_for, load_base

    family = TinyFamily.at(family_dir)
    bases = [load_base(family.base, dtype=torch.float32) for _ in range(2)]  # a UNet runs one adapter at a time
    adapter = load_adapter_for(bases[0], family.adapter)
    identity = MotionAdapter.from_config(adapter.config)
    return family, assemble_pipeline(bases[0], identity, "ddim", "auto", None), assemble_pipeline(bases[1], adapter, "ddim", "auto", None)


def _video(pipe, family, **kwargs) -> np.ndarray:
    settings = dict(prompt=family.prompt, num_frames=2, height=64, width=64, num_inference_steps=10, image=family.conditioning,
                    strength=0.8, generator=torch.Generator().manual_seed(0), output_type="np")
    out = pipe(**{**settings, **kwargs}).frames[0]
    return (np.clip(out, 0.0, 1.0) * 255).round().astype(np.uint8)


def test_the_image_model_denoises_its_inversion_back_into_the_image(family_pipelines):
    """DDIM from the inverted start, without guidance, is the inversion run backwards: every frame comes back to
    the image (as the VAE reconstructs it); from independent noise the image model draws another picture."""
    from motionkit.metrics import fit_image, psnr
    from motionkit.pipeline.image_input import load_image, vae_round_trip

    family, image_model, _ = family_pipelines
    image = fit_image(load_image(family.conditioning), 64, 64)
    reconstruction = vae_round_trip(image_model.vae, image[None])[0]
    common = dict(guidance_scale=1.0, anchor_first_frame=False)
    inverted = _video(image_model, family, image_inversion=1.0, **common)
    drawn = _video(image_model, family, **common)
    # (About 30 dB in 10 steps, 37 in 25: DDIM's steps are what the round trip loses.)
    worst_inverted = min(psnr(frame, reconstruction) for frame in inverted)
    assert worst_inverted > 27.0 and worst_inverted > max(psnr(frame, reconstruction) for frame in drawn) + 8.0


def test_share_zero_is_the_plain_draw_and_a_share_moves_the_start(family_pipelines):
    family, _, pipe = family_pipelines
    plain = _video(pipe, family, image_guidance="svd", guidance_scale=4.0)
    np.testing.assert_array_equal(_video(pipe, family, image_guidance="svd", guidance_scale=4.0, image_inversion=0.0), plain)
    assert not np.array_equal(_video(pipe, family, image_guidance="svd", guidance_scale=4.0, image_inversion=0.5), plain)
    # Given latents are the caller's noise: nothing is mixed into them.
    latents = torch.randn(1, 4, 2, 16, 16, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(
        _video(pipe, family, latents=latents, image_inversion=0.7), _video(pipe, family, latents=latents)
    )


def test_the_inversion_needs_an_image(family_pipelines):
    family, _, pipe = family_pipelines
    with pytest.raises(MotionkitError, match="image_inversion inverts the conditioning image: pass image"):
        pipe(prompt="a ball", num_frames=2, num_inference_steps=2, image_inversion=0.5, output_type="np")
    with pytest.raises(MotionkitError, match="image_inversion must lie in"):
        _video(pipe, family, image_inversion=2.0)


def test_v_prediction_models_invert_with_their_noise(family_pipelines, monkeypatch):
    """A v-prediction UNet's output is turned into noise, eps = sqrt(a) v + sqrt(1 - a) x_t, before it steps."""
    family, _, pipe = family_pipelines
    text = pipe._encode_text(_request(pipe, family.prompt))
    v = torch.randn(1, 4, 1, 16, 16, generator=torch.Generator().manual_seed(0))

    class Fixed:
        motion_strength = 1.0

        def __call__(self, sample, timestep, **kwargs):
            assert self.motion_strength == 0.0 and sample.shape[2] == 1  # the image model alone, one frame
            return type("Out", (), {"sample": v})()

    monkeypatch.setattr(pipe, "motion_unet", Fixed())
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    alpha = pipe.scheduler.alphas_cumprod[500]
    torch.testing.assert_close(pipe._image_model_noise(text, False)(x, 500), v[:, :, 0])
    monkeypatch.setitem(pipe.scheduler.config, "prediction_type", "v_prediction")
    expected = alpha.sqrt() * v[:, :, 0] + (1 - alpha).sqrt() * x
    torch.testing.assert_close(pipe._image_model_noise(text, False)(x, 500), expected)


def _request(pipe, prompt: str):
    from motionkit.pipeline.motion_pipeline import _PromptRequest

    return _PromptRequest(prompt, None, None, None, 1, False, None, None, 64, 64, torch.device("cpu"))

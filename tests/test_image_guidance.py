"""How the conditioning image enters classifier-free guidance: PIA's convention (default) equals diffusers'
``PIAPipeline`` on a PIA-layout adapter; SVD's (zero image in the unconditional branch) is an explicit option."""

import PIL.Image
import pytest
import torch
from diffusers import PIAPipeline
from diffusers.utils.torch_utils import randn_tensor

from motionkit import MotionAdapter, MotionkitError
from motionkit.formats.diffusers_format import to_diffusers_adapter
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.pipeline.schedulers import make_scheduler
from motionkit.tiny import randomize_, tiny_pipeline_components

SIZE, FRAMES = 64, 8


def _deterministic_vae_(vae) -> None:
    """Make the VAE's posterior a point mass (log-variance clamped to its floor), so PIAPipeline's
    ``latent_dist.sample`` equals motionkit's ``latent_dist.mode`` (to ~3e-7) while still drawing its noise."""
    with torch.no_grad():
        conv = vae.quant_conv if vae.quant_conv is not None else vae.encoder.conv_out
        half = conv.out_channels // 2
        conv.weight[half:].zero_()
        conv.bias[half:].fill_(-100.0)


def _components() -> dict:
    components = tiny_pipeline_components()  # the same seed builds the same base weights
    _deterministic_vae_(components["vae"])
    return components


@pytest.fixture(scope="module")
def adapter() -> MotionAdapter:
    unet = tiny_pipeline_components()["unet"]
    config = dict(preset="animatediff-v2", max_seq_length=FRAMES, temporal_norm="across_frames", image_cond_channels=5)
    return randomize_(MotionAdapter.from_unet(unet, **config))


@pytest.fixture(scope="module")
def image() -> PIL.Image.Image:
    y, x = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    pixels = (torch.stack([x, y, (x + y) / 2], dim=-1) * 255).round().to(torch.uint8).numpy()
    return PIL.Image.fromarray(pixels)


def _ours(adapter, **kwargs) -> MotionPipeline:
    pipe = MotionPipeline(**_components(), adapter=adapter)
    pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pia_noise(seed: int, shape: tuple[int, ...], latent_shape: tuple[int, ...]) -> torch.Tensor:
    """The noise PIAPipeline starts from at strength < 1, drawn in its order: the initial latents
    (unused), the VAE posterior sample, then the img2img noise."""
    generator = torch.Generator().manual_seed(seed)
    randn_tensor(shape, generator=generator)
    randn_tensor(latent_shape, generator=generator)
    return randn_tensor(shape, generator=generator)


@pytest.mark.parametrize("strength, motion_scale", [(0.8, 0), (0.6, 4)])
def test_pia_guidance_equals_diffusers_pia_pipeline(adapter, image, strength, motion_scale):
    base = _components()
    reference = PIAPipeline(
        vae=base["vae"], text_encoder=base["text_encoder"], tokenizer=base["tokenizer"], unet=base["unet"],
        motion_adapter=to_diffusers_adapter(adapter), scheduler=make_scheduler("ddim", base["scheduler"].config),
    )
    reference.set_progress_bar_config(disable=True)
    args = dict(prompt="a cat walking", negative_prompt="blurry", num_frames=FRAMES, height=SIZE, width=SIZE,
                num_inference_steps=4, guidance_scale=7.5, strength=strength, motion_scale=motion_scale)
    expected = reference(image=image, **args, output_type="latent", generator=torch.Generator().manual_seed(3)).frames
    noise = _pia_noise(3, (1, 4, FRAMES, SIZE // 8, SIZE // 8), (1, 4, SIZE // 8, SIZE // 8))
    pipe = _ours(adapter)
    actual = pipe(image=image, **args, output_type="latent", latents=noise).frames
    assert actual.shape == expected.shape == (1, 4, FRAMES, SIZE // 8, SIZE // 8)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)
    # The image really conditions the result: SVD's convention (zero image in the negative branch) differs.
    svd = pipe(image=image, **args, output_type="latent", latents=noise, image_guidance="svd").frames
    assert (svd - expected).abs().max() > 1e-3


def test_svd_convention_is_a_zero_negative_image_with_a_frame_ramp(adapter, image):
    pipe = _ours(adapter)
    seen = []
    original = pipe.motion_unet.forward

    def spy(sample, timestep, encoder_hidden_states, image_cond=None, **kwargs):
        seen.append(image_cond.clone())
        return original(sample, timestep, encoder_hidden_states, image_cond=image_cond, **kwargs)

    pipe.motion_unet.forward = spy
    args = dict(prompt="a cat", num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=2, output_type="latent")
    ramped = pipe(image=image, image_guidance="svd", **args, generator=torch.Generator().manual_seed(0)).frames
    negative, positive = seen[-1].chunk(2)
    assert negative.abs().max() == 0 and positive.abs().max() > 0
    seen.clear()
    pipe(image=image, image_guidance="pia", **args, generator=torch.Generator().manual_seed(0))
    negative, positive = seen[-1].chunk(2)
    assert torch.equal(negative, positive)
    # "svd" with no explicit ramp is the ramp from 1.0 to guidance_scale
    explicit = pipe(
        image=image, image_guidance="svd", min_guidance_scale=1.0, max_guidance_scale=7.5, **args,
        generator=torch.Generator().manual_seed(0),
    ).frames
    torch.testing.assert_close(ramped, explicit, atol=0, rtol=0)


def test_unknown_image_guidance_is_refused_in_one_line(adapter, image):
    with pytest.raises(MotionkitError, match="image_guidance 'both' is not one of pia, svd"):
        _ours(adapter)(prompt="a cat", image=image, num_frames=2, num_inference_steps=1, image_guidance="both")

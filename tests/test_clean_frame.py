"""Image-to-video with the conditioning frame inside the clip, clean, at timestep 0 (``image_cond.clean_frame``):
the training inputs and loss, the flag's round trip through the adapter's config, and the sampler feeding
the clean frame with per-frame timesteps under both guidance conventions and context windows."""

from __future__ import annotations

import PIL.Image
import pytest
import torch

from motionkit import MotionAdapter
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.pipeline.schedulers import make_scheduler
from motionkit.tiny import randomize_, tiny_pipeline_components
from motionkit.train.config import ImageCondConfig
from motionkit.train.image_cond import clean_conditioning_frames, image_cond_tensor
from motionkit.train.losses import diffusion_loss
from motionkit.train.trainer import Trainer, collate_clips
from tests.test_train import FRAMES, PatternClips, reset_accelerate, tiny_base, tiny_config  # noqa: F401

SIZE = 64


# -- training inputs and loss ---------------------------------------------------------------------


def test_clean_frames_go_where_the_mask_points_and_dropped_clips_stay_noisy():
    torch.manual_seed(0)
    noisy = torch.randn(3, 4, 5, 2, 2)
    cond_latents = torch.randn(3, 4, 2, 2)
    cond = torch.cat([image_cond_tensor(cond_latents[i : i + 1], index, 5) for i, index in enumerate((0, 3, 1))])
    cond[2] = 0.0  # the third clip's image was dropped
    timesteps = torch.tensor([900, 500, 700])
    out, per_frame, mask = clean_conditioning_frames(noisy, timesteps, cond)
    assert torch.equal(out[0, :, 0], cond_latents[0]) and torch.equal(out[1, :, 3], cond_latents[1])
    assert torch.equal(out[2], noisy[2])
    untouched = torch.ones(3, 5, dtype=torch.bool)
    untouched[0, 0] = untouched[1, 3] = False
    assert torch.equal(out.transpose(1, 2)[untouched], noisy.transpose(1, 2)[untouched])
    assert per_frame.tolist() == [0, 900, 900, 900, 900] + [500, 500, 500, 0, 500] + [700] * 5
    assert mask.tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 0, 1], [1] * 5]


def test_frame_mask_leaves_frames_out_of_their_clip_mean():
    torch.manual_seed(0)
    prediction, target = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    assert torch.allclose(diffusion_loss(prediction, target, frame_mask=torch.ones(2, 3)), diffusion_loss(prediction, target))
    mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    weights = torch.tensor([2.0, 0.5])
    first = (prediction[0, :, 1:] - target[0, :, 1:]).pow(2).mean()
    second = (prediction[1] - target[1]).pow(2).mean()
    assert torch.allclose(diffusion_loss(prediction, target, weights, mask), (2.0 * first + 0.5 * second) / 2)


def test_trainer_feeds_the_clean_frame_at_timestep_zero_and_no_loss_on_it(tmp_path):
    reset_accelerate()
    image_cond = ImageCondConfig(enabled=True, clean_frame=True, cond_dropout=0.0, first_frame_prob=1.0)
    trainer = Trainer(tiny_config(tmp_path, image_cond=image_cond), base=tiny_base(), dataset=PatternClips()).setup()
    assert trainer.adapter.config.clean_conditioning_frame is True
    seen = {}
    model = trainer.model

    def spy(noisy, timesteps, *args, **kwargs):
        out = model(noisy, timesteps, *args, **kwargs)
        out[0].retain_grad()
        seen.update(noisy=noisy, timesteps=timesteps, prediction=out[0], cond=kwargs["image_cond"])
        return out

    batch = collate_clips([trainer.dataset[i] for i in range(2)])
    trainer.compute_loss(batch, 0, [0, 1], model=spy).backward()
    steps = seen["timesteps"].reshape(2, FRAMES)
    assert (steps[:, 0] == 0).all() and (steps[:, 1:] > 0).all()
    assert torch.equal(seen["noisy"][:, :, 0], seen["cond"][:, 1:, 0].to(seen["noisy"]))
    grad = seen["prediction"].grad
    assert not grad[:, :, 0].any() and grad[:, :, 1:].abs().sum() > 0


def test_the_flag_survives_save_and_load(tmp_path):
    from motionkit.formats import load_adapter

    unet = tiny_pipeline_components()["unet"]
    adapter = MotionAdapter.from_unet(unet, "animatediff-v2", image_cond_channels=5, clean_conditioning_frame=True)
    adapter.save_pretrained(tmp_path / "adapter")
    assert load_adapter(str(tmp_path / "adapter")).config.clean_conditioning_frame is True
    assert MotionAdapter.from_unet(unet, "animatediff-v2").config.clean_conditioning_frame is False


# -- sampling ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipe() -> MotionPipeline:
    components = tiny_pipeline_components()
    adapter = MotionAdapter.from_unet(
        components["unet"], "animatediff-v2", max_seq_length=8, image_cond_channels=5,
        image_cond_mask="one_hot", clean_conditioning_frame=True,
    )
    pipe = MotionPipeline(**components, adapter=randomize_(adapter))
    pipe.scheduler = make_scheduler("euler", pipe.scheduler.config)  # an input scale that is not 1
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def image() -> PIL.Image.Image:
    y, x = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    return PIL.Image.fromarray((torch.stack([x, y, 1 - x], dim=-1) * 255).round().to(torch.uint8).numpy())


def _record(pipe, monkeypatch) -> list[dict]:
    calls = []
    forward = pipe.motion_unet.forward

    def spy(sample, timestep, *args, **kwargs):
        calls.append({"sample": sample.clone(), "timestep": torch.as_tensor(timestep).clone()})
        return forward(sample, timestep, *args, **kwargs)

    monkeypatch.setattr(pipe.motion_unet, "forward", spy)
    return calls


@pytest.mark.parametrize("image_guidance", ["pia", "svd"])
def test_sampler_feeds_frame_zero_clean_at_timestep_zero(pipe, image, monkeypatch, image_guidance):
    calls = _record(pipe, monkeypatch)
    frames = 4
    latent = pipe._encode_image(image, 1, SIZE, SIZE, torch.device("cpu"), torch.float32)
    out = pipe(
        "a ball", image=image, num_frames=frames, height=SIZE, width=SIZE, num_inference_steps=3, guidance_scale=3.0, output_type="latent",
        image_guidance=image_guidance, generator=torch.Generator().manual_seed(0),
    ).frames
    assert torch.equal(out[:, :, 0], latent.to(out))  # frame 0 is the image, as the VAE holds it
    assert len(calls) == 3
    for call in calls[:-1]:  # Euler's last step is at t = 0, where clean and noisy agree
        steps = call["timestep"].reshape(2, frames)  # negative half first
        t = steps.max()
        assert t > 0
        assert steps[1, 0] == 0 and (steps[1, 1:] == t).all()
        assert torch.equal(call["sample"][1, :, 0], latent[0])  # clean and unscaled
        if image_guidance == "pia":
            assert steps[0, 0] == 0 and torch.equal(call["sample"][0, :, 0], latent[0])
        else:  # SVD's convention: the unconditional half sees frame 0 as training's image dropout does
            assert (steps[0] == t).all() and not torch.equal(call["sample"][0, :, 0], latent[0])


def test_windows_without_frame_zero_run_at_one_timestep(pipe, image, monkeypatch):
    calls = _record(pipe, monkeypatch)
    pipe(
        "a ball", image=image, num_frames=10, height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=1.0, output_type="latent",
        context_length=4, context_overlap=1, generator=torch.Generator().manual_seed(0),
    )
    first_step = [c for c in calls[: len(calls) // 2]]
    assert len(first_step) > 1
    for call in first_step:
        steps = call["timestep"].reshape(-1)
        has_zero = bool((steps == 0).any())
        assert has_zero == torch.equal(call["sample"][0, :, 0], pipe._encode_image(image, 1, SIZE, SIZE, torch.device("cpu"), torch.float32)[0])
        assert int((steps == 0).sum()) <= 1


def test_clean_frame_composes_with_step_caching(pipe, image):
    latent = pipe._encode_image(image, 1, SIZE, SIZE, torch.device("cpu"), torch.float32)
    args = dict(num_frames=4, height=SIZE, width=SIZE, num_inference_steps=4, guidance_scale=3.0, output_type="latent")
    exact = pipe("a ball", image=image, generator=torch.Generator().manual_seed(0), **args).frames
    cached = pipe("a ball", image=image, cache_interval=2, generator=torch.Generator().manual_seed(0), **args).frames
    assert torch.equal(cached[:, :, 0], latent.to(cached))
    assert not torch.equal(cached, exact) and torch.isfinite(cached).all()

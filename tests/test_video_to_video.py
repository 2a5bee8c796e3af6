"""Video-to-video: equality with diffusers' AnimateDiffVideoToVideoPipeline, fps resampling, frame ranges,
chunked encoding, context windows, composition with control and LoRAs, and refusal of bad input."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import AnimateDiffVideoToVideoPipeline
from diffusers.utils.torch_utils import randn_tensor

from motionkit import MotionkitError
from motionkit.formats.diffusers_format import to_diffusers_adapter, to_unet_motion_model
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.pipeline.schedulers import make_scheduler
from motionkit.pipeline.video_input import SourceVideo, parse_frame_range, read_source_video
from motionkit.tiny import tiny_pipeline_components
from motionkit.video_io import write_video

from tests.test_image_guidance import _deterministic_vae_
from tests.test_pipeline import SIZE, TABLE, _adapter

FRAMES = 6
LATENT = SIZE // 8


def _components() -> dict:
    components = tiny_pipeline_components()  # the same seed builds the same base weights
    _deterministic_vae_(components["vae"])
    components["scheduler"] = make_scheduler("ddim", components["scheduler"].config)
    return components


@pytest.fixture(scope="module")
def pipe() -> MotionPipeline:
    components = _components()
    pipe = MotionPipeline(**components, adapter=_adapter(components["unet"]))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _clip(count: int, seed: int = 0) -> list[PIL.Image.Image]:
    """A moving gradient: a smooth, plausible source clip at the output size."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(0, 1, SIZE), np.linspace(0, 1, SIZE), indexing="ij")
    frames = []
    for k in range(count):
        shift = k / max(1, count)
        rgb = np.stack([(x + shift) % 1, y, (x + y + shift) / 2 % 1], axis=-1) * 200 + rng.uniform(0, 30, (SIZE, SIZE, 3))
        frames.append(PIL.Image.fromarray(rgb.clip(0, 255).astype(np.uint8)))
    return frames


def _diffusers_noise(seed: int, frames: int, chunk: int) -> torch.Tensor:
    """The img2img noise AnimateDiffVideoToVideoPipeline draws, in its order: one posterior sample per
    encoded chunk, then the noise in [B, F, C, h, w], which it permutes to [B, C, F, h, w]."""
    generator = torch.Generator().manual_seed(seed)
    for begin in range(0, frames, chunk):
        randn_tensor((min(chunk, frames - begin), 4, LATENT, LATENT), generator=generator)
    return randn_tensor((1, frames, 4, LATENT, LATENT), generator=generator).permute(0, 2, 1, 3, 4)


@pytest.mark.parametrize("strength, chunk", [(0.6, 16), (0.8, 4)])
def test_video_to_video_equals_diffusers(pipe, strength, chunk):
    fresh = _components()
    reference = AnimateDiffVideoToVideoPipeline(
        vae=fresh["vae"], text_encoder=fresh["text_encoder"], tokenizer=fresh["tokenizer"],
        unet=to_unet_motion_model(fresh["unet"], pipe.adapter), motion_adapter=to_diffusers_adapter(pipe.adapter),
        scheduler=make_scheduler("ddim", pipe.scheduler.config),
    )
    reference.set_progress_bar_config(disable=True)
    video = _clip(FRAMES)
    args = dict(prompt="a cat walking", negative_prompt="blurry", height=SIZE, width=SIZE, num_inference_steps=5,
                guidance_scale=7.5, strength=strength, decode_chunk_size=chunk, output_type="latent")
    expected = reference(video=video, **args, generator=torch.Generator().manual_seed(4)).frames
    actual = pipe(video=video, **args, latents=_diffusers_noise(4, FRAMES, chunk)).frames
    assert actual.shape == expected.shape == (1, 4, FRAMES, LATENT, LATENT)
    tolerance = 2e-6 * max(1.0, float(expected.abs().max()))
    assert float((actual - expected).abs().max()) <= tolerance
    # The source really conditions the result: another clip gives another video.
    other = pipe(video=_clip(FRAMES, seed=9)[::-1], **args, latents=_diffusers_noise(4, FRAMES, chunk)).frames
    assert (other - actual).abs().max() > 1e-3


def test_low_strength_stays_close_to_the_source(pipe):
    from motionkit.pipeline.video_input import encode_video

    video = np.stack([np.asarray(f) for f in _clip(FRAMES)])
    source = encode_video(video, SIZE, SIZE, pipe._encode_pixels)
    args = dict(prompt="a cat", height=SIZE, width=SIZE, num_inference_steps=10, output_type="latent")
    near = pipe(video=video, strength=0.1, **args, generator=torch.Generator().manual_seed(0)).frames
    far = pipe(video=video, strength=1.0, **args, generator=torch.Generator().manual_seed(0)).frames
    # A random tiny VAE cannot reconstruct pixels, so closeness is measured on the latents.
    assert (near - source).abs().mean() < 0.5 * (far - source).abs().mean()


def test_chunked_encoding_equals_one_pass(pipe):
    video = _clip(FRAMES)
    args = dict(prompt="a cat", height=SIZE, width=SIZE, num_inference_steps=2, strength=0.5, output_type="latent")
    one = pipe(video=video, decode_chunk_size=16, **args, generator=torch.Generator().manual_seed(1)).frames
    chunked = pipe(video=video, decode_chunk_size=1, **args, generator=torch.Generator().manual_seed(1)).frames
    torch.testing.assert_close(chunked, one, atol=1e-5, rtol=0)


def test_long_source_runs_in_context_windows(pipe, caplog):
    # 12 frames over an 8-frame position table: windows are picked without being asked for.
    video = _clip(TABLE + 4)
    out = pipe(prompt="a cat", video=video, strength=0.7, height=SIZE, width=SIZE, num_inference_steps=2,
               output_type="latent", generator=torch.Generator().manual_seed(0)).frames
    assert out.shape[2] == TABLE + 4
    assert "context windows" in caplog.text
    first = pipe(prompt="a cat", video=video, num_frames=5, strength=0.7, height=SIZE, width=SIZE,
                 num_inference_steps=2, output_type="latent", generator=torch.Generator().manual_seed(0)).frames
    assert first.shape[2] == 5


def test_video_composes_with_controlnet_and_context_windows():
    # (LoRAs and MotionLoRAs with a source video: tests/test_cli_video.py)
    from diffusers import ControlNetModel

    from motionkit.tiny import randomize_

    components = _components()
    controlnet = randomize_(ControlNetModel.from_unet(components["unet"]), seed=3, std=0.05).eval()
    pipe = MotionPipeline.from_components(components, _adapter(components["unet"]), controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    video = _clip(FRAMES)
    args = dict(prompt="a cat", video=video, strength=0.7, height=SIZE, width=SIZE, num_inference_steps=2,
                output_type="latent", context_length=4, context_overlap=2)
    plain = pipe(**args, generator=torch.Generator().manual_seed(0)).frames
    controlled = pipe(**args, conditioning_frames=_clip(FRAMES, seed=5), generator=torch.Generator().manual_seed(0)).frames
    assert controlled.shape == plain.shape and (controlled - plain).abs().max() > 1e-4
    assert torch.isfinite(controlled).all()


def test_read_source_video_resamples_to_the_output_fps(tmp_path):
    frames = np.stack([np.full((16, 16, 3), 10 * k, np.uint8) for k in range(24)])
    path = write_video(frames, tmp_path / "clip", fps=24, metadata={})  # a frame folder, its fps in a sidecar
    clip = read_source_video(path, fps=8)
    assert clip.indices == tuple(range(0, 24, 3)) and clip.source_fps == 24 and clip.fps == 8
    assert [int(f[0, 0, 0]) for f in clip.frames] == [10 * k for k in range(0, 24, 3)]
    ranged = read_source_video(path, fps=8, start=4, end=13)
    assert ranged.indices == (4, 7, 10)
    slow = read_source_video(path, fps=48, source_fps=24, end=3)  # a higher output rate repeats frames
    assert slow.indices == (0, 0, 1, 1, 2, 2)
    assert read_source_video(path, fps=8, max_frames=2).indices == (0, 3)
    assert len(read_source_video(path)) == 24  # no output fps: every frame
    assert clip.to_dict()["source_frames"] == [0, 21]


def test_source_video_and_frame_range_refusals(tmp_path, pipe):
    assert parse_frame_range("8:32") == (8, 32) and parse_frame_range("5:") == (5, None) and parse_frame_range(None) == (0, None)
    for bad in ("8", "a:b", "9:3", "-1:4"):
        with pytest.raises(MotionkitError, match="START:END|empty or negative"):
            parse_frame_range(bad)
    path = write_video(np.zeros((4, 16, 16, 3), np.uint8), tmp_path / "short", fps=8)
    with pytest.raises(MotionkitError, match="no frames in the source range 10:"):
        read_source_video(path, start=10)
    video = SourceVideo(np.zeros((3, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(MotionkitError, match="num_frames 5 is more than the source video's 3 frames"):
        pipe(prompt="a cat", video=video, num_frames=5, num_inference_steps=1)
    with pytest.raises(MotionkitError, match="not both"):
        pipe(prompt="a cat", video=video, image=_clip(1)[0], num_inference_steps=1)
    with pytest.raises(MotionkitError, match="a video must be"):
        pipe(prompt="a cat", video=np.zeros((SIZE, SIZE, 3)), num_inference_steps=1)

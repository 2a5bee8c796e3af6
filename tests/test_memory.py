"""Memory options: CPU offload hooks (wired through diffusers, run here with the CPU as the 'accelerator'),
VAE slicing and tiling equal to diffusers' AnimateDiffPipeline with the same switches, decode chunks, the
accelerator checks, and the CLI flags."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AnimateDiffPipeline

from motionkit import MotionkitError
from motionkit.formats.diffusers_format import to_diffusers_adapter, to_unet_motion_model
from motionkit.pipeline.memory import apply_memory_options, check_device, check_offload, enable_offload, mps_available
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.pipeline.schedulers import make_scheduler
from motionkit.tiny import tiny_pipeline_components
from motionkit.video_io import sidecar_path

from tests.test_cli_animate import animate, assets, one_thread  # noqa: F401  (fixtures)
from tests.test_pipeline import SIZE, _adapter

ARGS = dict(prompt="a cat walking", negative_prompt="blurry", num_frames=6, height=SIZE, width=SIZE,
            num_inference_steps=2, guidance_scale=7.5)


def _pipe() -> MotionPipeline:
    components = tiny_pipeline_components()
    components["scheduler"] = make_scheduler("ddim", components["scheduler"].config)
    pipe = MotionPipeline.from_components(components, _adapter(components["unet"]))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, **kwargs) -> torch.Tensor:
    return torch.as_tensor(pipe(**{**ARGS, **kwargs}, generator=torch.Generator().manual_seed(0)).frames)


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_offload_installs_diffusers_hooks_and_keeps_the_result(mode):
    pipe = _pipe()
    expected = _run(pipe, output_type="latent")
    enable_offload(pipe, mode, "cpu")  # the CPU stands in for the accelerator: hooks run, nothing moves far
    assert hasattr(pipe.unet, "_hf_hook") and hasattr(pipe.text_encoder, "_hf_hook") and hasattr(pipe.vae, "_hf_hook")
    assert not hasattr(pipe.adapter, "_hf_hook")  # the adapter runs inside the UNet's forward: never offloaded
    assert pipe.adapter.device.type == "cpu"
    if mode == "sequential":  # weights wait off-device (meta) until their module runs
        assert {p.device.type for p in pipe.unet.parameters()} == {"meta"}
    if mode == "model":
        torch.testing.assert_close(_run(pipe, output_type="latent"), expected, atol=1e-6, rtol=0)
    # Sequential hooks cannot run with the CPU as their execution device: accelerate fails inside its own
    # hooks there, for diffusers' StableDiffusionPipeline alike, so that run needs a CUDA machine.


def test_offload_and_devices_are_refused_where_they_cannot_act():
    with pytest.raises(MotionkitError, match="moves models between main memory and an accelerator"):
        check_offload("model", "cpu")
    with pytest.raises(MotionkitError, match="unknown offload mode 'disk'"):
        check_offload("disk", "cpu")
    with pytest.raises(MotionkitError, match="--offload sequential"):
        apply_memory_options(_pipe(), offload="sequential", device="cpu")
    if mps_available():
        assert check_device("mps") == "mps"
    else:
        with pytest.raises(MotionkitError, match="--device mps was asked for but"):
            check_device("mps")
    if torch.cuda.is_available():
        assert check_device(None) == "cuda"
    else:
        assert check_device(None) == "cpu"
        with pytest.raises(MotionkitError, match="no CUDA GPU is available"):
            check_device("cuda")


def _small_tiles(vae) -> None:
    # The tiny VAE's tiles are 128 px; 32 px tiles make a 64 px video decode in overlapping tiles.
    vae.tile_sample_min_size, vae.tile_latent_min_size = 32, 4


def test_vae_slicing_tiling_and_chunks_equal_diffusers():
    pipe = _pipe()
    plain = _run(pipe, output_type="pt")
    apply_memory_options(pipe, vae_slicing=True, vae_tiling=True)
    _small_tiles(pipe.vae)
    assert pipe.vae.use_slicing and pipe.vae.use_tiling
    fresh = tiny_pipeline_components()
    reference = AnimateDiffPipeline(
        vae=fresh["vae"], text_encoder=fresh["text_encoder"], tokenizer=fresh["tokenizer"],
        unet=to_unet_motion_model(fresh["unet"], pipe.adapter), motion_adapter=to_diffusers_adapter(pipe.adapter),
        scheduler=make_scheduler("ddim", pipe.scheduler.config),
    )
    reference.set_progress_bar_config(disable=True)
    reference.vae.enable_slicing()
    reference.vae.enable_tiling()
    _small_tiles(reference.vae)
    for chunk in (16, 4):
        expected = torch.as_tensor(
            reference(**ARGS, output_type="pt", decode_chunk_size=chunk, generator=torch.Generator().manual_seed(0)).frames
        )
        tiled = _run(pipe, output_type="pt", decode_chunk_size=chunk)
        torch.testing.assert_close(tiled, expected, atol=1e-5, rtol=0)
    assert (tiled - plain).abs().max() > 0  # the tiles really changed the decode
    one_frame = _run(pipe, output_type="pt", decode_chunk_size=1)
    torch.testing.assert_close(one_frame, tiled, atol=1e-5, rtol=0)


def test_memory_flags_on_the_command_line(assets, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "clip.gif"
    args = ["--prompt", "a cat", "--frames", "3", "--width", "64", "--height", "64", "--steps", "2", "--seed", "1"]
    assert animate(assets, *args, "--vae-slicing", "--vae-tiling", "--decode-chunk", "2", "--out", str(out)) == 0, (
        capsys.readouterr().err
    )
    capsys.readouterr()
    settings = json.loads(sidecar_path(out).read_text())["settings"]
    assert (settings["vae_slicing"], settings["vae_tiling"], settings["decode_chunk"], settings["offload"]) == (True, True, 2, None)
    for extra, needle in (
        (["--offload", "model", "--device", "cpu"], "--offload model moves models between main memory"),
        (["--decode-chunk", "0"], "--decode-chunk must be a whole number of at least 1"),
    ):
        assert animate(assets, *args, *extra, "--out", str(tmp_path / "x.mp4")) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    if not mps_available():
        assert animate(assets, *args, "--device", "mps", "--out", str(tmp_path / "x.mp4")) == 2
        err = capsys.readouterr().err.strip()
        assert "--device mps was asked for but" in err and len(err.splitlines()) == 1

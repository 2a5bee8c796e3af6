"""Sampling stops with one line when the latents turn NaN or infinite, instead of writing a black video."""

import pytest
import torch

from motionkit import MotionAdapter, MotionkitError
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.tiny import randomize_, tiny_pipeline_components

SIZE = 64


def _pipeline(poison: float | None) -> MotionPipeline:
    components = tiny_pipeline_components()
    adapter = randomize_(MotionAdapter.from_unet(components["unet"], preset="animatediff-v2", max_seq_length=8))
    if poison is not None:
        # What a damaged adapter built in memory (or an fp16 overflow) does: one weight past the finite range.
        with torch.no_grad():
            adapter.down_blocks[0].motion_modules[0].temporal_transformer.proj_out.weight[0, 0] = poison
    pipe = MotionPipeline(**components, adapter=adapter)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe: MotionPipeline):
    return pipe(
        prompt="a cat", num_frames=2, height=SIZE, width=SIZE, num_inference_steps=2, output_type="latent",
        generator=torch.Generator().manual_seed(0),
    ).frames


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_non_finite_latents_stop_sampling_in_one_line(poison):
    with pytest.raises(MotionkitError, match=r"^the latents turned NaN or infinite at step 1 of 2") as caught:
        _run(_pipeline(poison))
    assert "\n" not in str(caught.value)


def test_finite_sampling_is_untouched():
    assert torch.isfinite(_run(_pipeline(None))).all()

"""motion_strength: a scale on every motion module's residual, for any adapter."""

import pytest
import torch

from motionkit import MotionAdapter, MotionkitError
from motionkit.injection import inject
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.tiny import randomize_, tiny_pipeline_components, tiny_unet, unet_inputs


def _adapter(unet, **overrides) -> MotionAdapter:
    return randomize_(MotionAdapter.from_unet(unet, **{"preset": "animatediff-v2", "max_seq_length": 8, **overrides}))


@pytest.mark.parametrize("preset", ["animatediff-v2", "motionkit-sd15"])  # attention only; with temporal convs
def test_strength_scales_each_residual(preset):
    unet = tiny_unet()
    motion = inject(unet, _adapter(unet, preset=preset))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    module = motion.adapter.down_blocks[0].motion_modules[0]
    handle = module.register_forward_hook(lambda m, args, out: seen.append((args[0].clone(), out.clone())))
    inputs = unet_inputs(unet, frames=4)
    outputs = {}
    for strength in (1.0, 0.5, 2.0):
        motion.motion_strength = strength
        outputs[strength] = motion(**inputs).sample
    handle.remove()
    motion.motion_strength = 0.0
    image_model = motion(**inputs).sample
    motion.eject()
    b, c, f, h, w = inputs["sample"].shape
    plain = unet(inputs["sample"].transpose(1, 2).reshape(b * f, c, h, w), inputs["timestep"].repeat_interleave(f),
                 inputs["encoder_hidden_states"].repeat_interleave(f, dim=0)).sample
    torch.testing.assert_close(image_model, plain.reshape(b, f, c, h, w).transpose(1, 2), atol=1e-5, rtol=0)
    x, out = seen[0]  # the first module sees the same input at every strength; its residual is what scales
    assert not torch.allclose(out, x)
    assert (outputs[0.5] - outputs[1.0]).abs().max() > 1e-4 and (outputs[2.0] - outputs[1.0]).abs().max() > 1e-4


def test_pipeline_strength_one_is_the_default_and_zero_the_image_model():
    components = tiny_pipeline_components()
    pipe = MotionPipeline(**components, adapter=_adapter(components["unet"]))
    pipe.set_progress_bar_config(disable=True)
    args = dict(prompt="a cat", num_frames=4, height=64, width=64, num_inference_steps=2, output_type="pt")
    run = lambda **kw: pipe(**args, **kw, generator=torch.Generator().manual_seed(0)).frames  # noqa: E731
    default = run()
    torch.testing.assert_close(run(motion_strength=1.0), default, atol=0, rtol=0)
    zero = run(motion_strength=0.0)
    identity = MotionPipeline(**tiny_pipeline_components(), adapter=MotionAdapter.from_unet(components["unet"], preset="animatediff-v2", max_seq_length=8))
    identity.set_progress_bar_config(disable=True)
    torch.testing.assert_close(zero, identity(**args, generator=torch.Generator().manual_seed(0)).frames, atol=1e-5, rtol=0)
    half = run(motion_strength=0.5)
    assert (half - default).abs().max() > 1e-4 and (half - zero).abs().max() > 1e-4
    assert pipe.motion_unet.motion_strength == 1.0  # reset after the call
    for bad in (-0.1, float("nan"), 5.0, "1"):
        with pytest.raises(MotionkitError, match="motion_strength"):
            run(motion_strength=bad)

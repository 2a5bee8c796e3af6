"""Injection: equality with diffusers' UNetMotionModel, identity, eject, freezing, UNet features."""

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor
from peft import LoraConfig

from motionkit import LayoutMismatchError, MotionAdapter, MotionkitError, inject
from motionkit.formats.diffusers_format import to_unet_motion_model
from motionkit.tiny import randomize_, tiny_unet, unet_inputs


@pytest.mark.parametrize("name, use_mid", [("tiny-sd", True), ("tiny-sdxl", False)])
def test_matches_diffusers_unet_motion_model(name, use_mid):
    unet = tiny_unet(name)
    adapter = randomize_(
        MotionAdapter.from_unet(unet, preset="animatediff-v2", use_mid_block=use_mid, temporal_norm="across_frames")
    )
    assert all(p.abs().min() > 0 for p in adapter.parameters()), "every weight must be non-zero"
    reference = to_unet_motion_model(unet, adapter)
    inputs = unet_inputs(unet, batch=2, frames=8)
    frames = inputs["sample"].shape[2]
    with torch.no_grad():
        expected = reference(
            inputs["sample"],
            inputs["timestep"],
            inputs["encoder_hidden_states"].repeat_interleave(frames, dim=0),
            added_cond_kwargs=inputs.get("added_cond_kwargs"),
        ).sample
        actual = inject(unet, adapter)(**inputs).sample
    assert actual.shape == expected.shape == inputs["sample"].shape
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_fresh_adapter_is_identity_and_eject_is_exact():
    unet = tiny_unet("tiny-sd")
    state_before = {k: v.clone() for k, v in unet.state_dict().items()}
    inputs = unet_inputs(unet, batch=2, frames=6)
    b, c, f, h, w = inputs["sample"].shape
    per_frame = inputs["sample"].transpose(1, 2).reshape(b * f, c, h, w)
    with torch.no_grad():
        plain = unet(per_frame, inputs["timestep"].repeat_interleave(f), inputs["encoder_hidden_states"].repeat_interleave(f, 0)).sample
        for preset in ("animatediff-v2", "motionkit-sd15"):
            adapter = MotionAdapter.from_unet(unet, preset=preset, image_cond_channels=5)
            motion = inject(unet, adapter)
            out = motion(**inputs).sample
            assert torch.equal(out.transpose(1, 2).reshape(b * f, c, h, w), plain), preset
            ejected = motion.eject()
            assert ejected is unet
        again = unet(per_frame, inputs["timestep"].repeat_interleave(f), inputs["encoder_hidden_states"].repeat_interleave(f, 0)).sample
    assert torch.equal(again, plain)
    assert all(torch.equal(state_before[k], v) for k, v in unet.state_dict().items())
    assert all(p.requires_grad for p in unet.parameters()), "eject restores requires_grad"
    assert not any(m._forward_hooks for m in unet.modules()), "eject removes every hook"


def test_spatial_weights_frozen_and_only_adapter_gets_gradients():
    unet = tiny_unet("tiny-sd")
    adapter = randomize_(MotionAdapter.from_unet(unet, preset="motionkit-sd15"))
    motion = inject(unet, adapter)
    assert not any(p.requires_grad for p in unet.parameters())
    assert all(p.requires_grad for p in adapter.parameters())
    motion(**unet_inputs(unet, frames=4)).sample.square().mean().backward()
    assert all(p.grad is None for p in unet.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in adapter.named_parameters()), "every adapter weight learns"


def test_per_frame_text_embeddings_are_accepted():
    unet = tiny_unet("tiny-sd")
    motion = inject(unet, randomize_(MotionAdapter.from_unet(unet, preset="animatediff-v3")))
    inputs = unet_inputs(unet, batch=2, frames=4)
    with torch.no_grad():
        per_video = motion(**inputs).sample
        inputs["encoder_hidden_states"] = inputs["encoder_hidden_states"].repeat_interleave(4, dim=0)
        per_frame = motion(**inputs).sample
    torch.testing.assert_close(per_video, per_frame)


def test_layout_mismatch_names_both_layouts():
    sd_unet = tiny_unet("tiny-sd")
    xl_adapter = MotionAdapter.from_unet(tiny_unet("tiny-sdxl"), preset="animatediff-sdxl-beta")
    with pytest.raises(LayoutMismatchError) as err:
        inject(sd_unet, xl_adapter)
    message = str(err.value)
    assert "[32, 64, 64]" in message and "[32, 64]" in message and "\n" not in message
    four_blocks = MotionAdapter(block_out_channels=(32, 64, 64, 64), norm_num_groups=8, num_attention_heads=4)
    with pytest.raises(LayoutMismatchError, match="does not fit"):
        inject(tiny_unet("tiny-sdxl"), four_blocks)


def test_frames_beyond_position_table_are_refused():
    unet = tiny_unet("tiny-sd")
    motion = inject(unet, MotionAdapter.from_unet(unet, preset="animatediff-v3", max_seq_length=4))
    with pytest.raises(MotionkitError, match="context windows"):
        motion(**unet_inputs(unet, frames=5))


def test_image_lora_through_diffusers_while_injected():
    unet = tiny_unet("tiny-sd")
    inputs = unet_inputs(unet, frames=4)
    b, c, f, h, w = inputs["sample"].shape
    motion = inject(unet, MotionAdapter.from_unet(unet, preset="animatediff-v3"))
    with torch.no_grad():
        before = motion(**inputs).sample
    torch.manual_seed(1)
    unet.add_adapter(LoraConfig(r=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False))
    with torch.no_grad():
        with_lora = motion(**inputs).sample
        per_frame = unet(
            inputs["sample"].transpose(1, 2).reshape(b * f, c, h, w),
            inputs["timestep"].repeat_interleave(f),
            inputs["encoder_hidden_states"].repeat_interleave(f, 0),
        ).sample
    assert (with_lora - before).abs().max() > 1e-3, "the LoRA must change the output"
    torch.testing.assert_close(with_lora.transpose(1, 2).reshape(b * f, c, h, w), per_frame)
    assert not any("lora" in n for n, _ in motion.adapter.named_parameters()), "image LoRAs stay out of the adapter"


def test_attention_processors_and_compile_keep_working():
    unet = tiny_unet("tiny-sd")
    motion = inject(unet, randomize_(MotionAdapter.from_unet(unet, preset="animatediff-v2")))
    inputs = unet_inputs(unet, frames=4)
    with torch.no_grad():
        reference = motion(**inputs).sample
        unet.set_attn_processor(AttnProcessor())
        torch.testing.assert_close(motion(**inputs).sample, reference, atol=1e-5, rtol=1e-5)
        compiled = torch.compile(motion, backend="aot_eager", fullgraph=False)
        torch.testing.assert_close(compiled(**inputs).sample, reference, atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_covers_motion_modules():
    unet = tiny_unet("tiny-sd")
    adapter = randomize_(MotionAdapter.from_unet(unet, preset="motionkit-sd15"))
    motion = inject(unet, adapter)
    inputs = unet_inputs(unet, frames=4)
    calls = []
    module = next(adapter.motion_modules())
    module.temporal_transformer.register_forward_pre_hook(lambda *_: calls.append(1))

    def grads():
        adapter.zero_grad()
        calls.clear()
        motion(**inputs).sample.square().mean().backward()
        return {n: p.grad.clone() for n, p in adapter.named_parameters()}, len(calls)

    plain, plain_calls = grads()
    motion.enable_gradient_checkpointing()
    checkpointed, checkpointed_calls = grads()
    assert plain_calls == 1
    assert checkpointed_calls == 2, "a checkpointed motion module is recomputed in backward"
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)


def test_image_conditioning_branch():
    unet = tiny_unet("tiny-sd")
    adapter = MotionAdapter.from_unet(unet, preset="animatediff-v3", image_cond_channels=5)
    motion = inject(unet, adapter)
    inputs = unet_inputs(unet, frames=4)
    cond = torch.randn(1, 5, 16, 16)
    with torch.no_grad():
        plain = motion(**inputs).sample
        torch.testing.assert_close(motion(**inputs, image_cond=cond).sample, plain)  # zero-initialised branch
        randomize_(adapter)
        plain = motion(**inputs).sample
    conditioned = motion(**inputs, image_cond=cond).sample
    assert (conditioned - plain).abs().max() > 1e-3
    conditioned.square().mean().backward()
    assert adapter.image_cond_conv.weight.grad.abs().sum() > 0
    assert unet.conv_in.weight.grad is None, "the UNet's own conv_in stays frozen"
    motion.eject()
    plain_motion = inject(unet, MotionAdapter.from_unet(unet, preset="animatediff-v3"))
    with pytest.raises(MotionkitError, match="image-conditioning"):
        plain_motion(**inputs, image_cond=cond)


def test_second_injection_is_refused_until_eject():
    unet = tiny_unet("tiny-sd")
    motion = inject(unet, MotionAdapter.from_unet(unet, preset="animatediff-v3"))
    with pytest.raises(MotionkitError, match="eject"):
        inject(unet, MotionAdapter.from_unet(unet, preset="animatediff-v3"))
    motion.eject()
    inject(unet, MotionAdapter.from_unet(unet, preset="animatediff-v3"))


def test_frozen_convolutions_keep_no_input_and_gradients_are_unchanged():
    from torch.multiprocessing.reductions import StorageWeakRef

    unet = tiny_unet("tiny-sd")
    adapter = randomize_(MotionAdapter.from_unet(unet, preset="animatediff-v2"))
    motion = inject(unet, adapter)
    inputs = unet_inputs(unet, frames=4)
    conv = unet.up_blocks[-1].resnets[-1].conv1  # after motion modules: its input needs a gradient
    seen = []
    probe = conv.register_forward_pre_hook(lambda _m, args: seen.append(StorageWeakRef(args[0].untyped_storage())))

    def run(lean: bool):
        motion.lean_frozen_convs = lean
        adapter.zero_grad()
        seen.clear()
        out = motion(**inputs).sample
        kept = not seen[0].expired()  # forward is over: only backward could still need the input
        out.square().mean().backward()
        return out.detach(), {n: p.grad.clone() for n, p in adapter.named_parameters()}, kept

    (out_a, grads_a, kept_a), (out_b, grads_b, kept_b) = run(True), run(False)
    assert kept_b and not kept_a
    torch.testing.assert_close(out_a, out_b, atol=0, rtol=0)
    for name in grads_b:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-5, msg=name)
    probe.remove()
    motion.eject()
    assert all(not m._forward_pre_hooks for m in unet.modules() if isinstance(m, torch.nn.Conv2d))


def test_a_training_forward_reads_the_unet_s_checkpointing_state_once(monkeypatch):
    """diffusers' ``is_gradient_checkpointing`` walks every module; read per convolution it cost a training step of
    SD 1.5's UNet 185 ms of Python. One read a forward, whatever the number of convolutions."""
    unet = tiny_unet("tiny-sd")
    motion = inject(unet, randomize_(MotionAdapter.from_unet(unet, preset="animatediff-v2")))
    reads = []
    walk = type(unet).is_gradient_checkpointing
    monkeypatch.setattr(type(unet), "is_gradient_checkpointing", property(lambda self: reads.append(1) or walk.fget(self)))
    motion(**unet_inputs(unet, frames=2)).sample.mean().backward()
    assert sum(isinstance(m, torch.nn.Conv2d) for m in unet.modules()) > 10 and len(reads) == 1
    unet.enable_gradient_checkpointing()  # and the one read still sees it: no lean convolutions under checkpointing
    motion(**unet_inputs(unet, frames=2))
    assert not motion.frozen_convs.enabled and len(reads) == 2
    with torch.no_grad():  # sampling: nothing is checkpointed, so nothing is read
        motion(**unet_inputs(unet, frames=2))
    assert len(reads) == 2
    motion.eject()


def test_feed_forward_chunks_on_cpu_give_the_same_output_and_are_undone():
    from diffusers.models.attention import BasicTransformerBlock

    from motionkit.feed_forward_chunks import frames_per_chunk

    assert frames_per_chunk(32, 256) == 2 and frames_per_chunk(6, 64) == 6 and frames_per_chunk(7, 256) == 1
    unet = tiny_unet("tiny-sd")
    motion = inject(unet, randomize_(MotionAdapter.from_unet(unet, preset="animatediff-v2")))
    inputs = unet_inputs(unet, batch=2, frames=6)
    blocks = [m for m in unet.modules() if isinstance(m, BasicTransformerBlock)]
    blocks[0].set_chunk_feed_forward(3, 0)  # a user's own setting is kept
    seen = []
    blocks[-1].ff.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    with torch.no_grad():
        motion.chunk_feed_forwards = False
        whole = motion(**inputs).sample
        motion.chunk_feed_forwards = True
        chunked = motion(**inputs).sample
    assert seen[0] == 12 and set(seen[1:]) == {2}, "12 frames of 16 x 16 positions run 2 frames a chunk"
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-5)
    assert blocks[0]._chunk_size == 3 and all(b._chunk_size is None for b in blocks[1:])

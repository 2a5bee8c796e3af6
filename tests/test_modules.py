"""Motion modules: original per-frame numerics, identity at init, temporal convolution, attention backends."""

import importlib.util
import math

import pytest
import torch
from diffusers.models.embeddings import SinusoidalPositionalEmbedding

from motionkit.kernels import dispatch, short_attention
from motionkit.kernels.dispatch import BackendUnavailableError, check_backend, math_attention, sdpa_attention
from motionkit.modules import MotionModule, TemporalConvBlock, TemporalTransformer, sinusoidal_table


def _randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return module


def _original_per_frame_reference(tt: TemporalTransformer, x: torch.Tensor, frames: int) -> torch.Tensor:
    """The original AnimateDiff SD1.5 TemporalTransformer3DModel, written out step by step.

    GroupNorm on (b f) c h w (per frame) -> (b f) (h w) c -> proj_in -> per block: for each attention,
    LayerNorm -> + PE -> attention over frames via (b f) d c -> (b d) f c -> residual; ff_norm -> GEGLU
    -> residual -> proj_out -> back to (b f) c h w -> + input.
    """
    bf, c, h, w = x.shape
    b = bf // frames
    hidden = torch.nn.functional.group_norm(x, tt.norm.num_groups, tt.norm.weight, tt.norm.bias, tt.norm.eps)
    hidden = hidden.permute(0, 2, 3, 1).reshape(bf, h * w, c)
    hidden = tt.proj_in(hidden)
    pe = sinusoidal_table(tt.max_seq_length, c)[:frames]
    for block in tt.transformer_blocks:
        for norm, attn in zip(block.norms, block.attention_blocks):
            normed = norm(hidden)
            seq = normed.reshape(b, frames, h * w, c).permute(0, 2, 1, 3).reshape(b * h * w, frames, c) + pe
            q, k, v = attn.to_q(seq), attn.to_k(seq), attn.to_v(seq)
            heads, d = attn.heads, c // attn.heads
            q, k, v = (t.reshape(b * h * w, frames, heads, d).permute(0, 2, 1, 3) for t in (q, k, v))
            probs = (q @ k.transpose(-1, -2) / math.sqrt(d)).softmax(-1)
            out = (probs @ v).permute(0, 2, 1, 3).reshape(b * h * w, frames, c)
            out = attn.to_out[0](out)
            out = out.reshape(b, h * w, frames, c).permute(0, 2, 1, 3).reshape(bf, h * w, c)
            hidden = hidden + out
        proj, gate = block.ff.net[0].proj(block.ff_norm(hidden)).chunk(2, dim=-1)
        hidden = hidden + block.ff.net[2](proj * torch.nn.functional.gelu(gate))
    hidden = tt.proj_out(hidden)
    return hidden.reshape(bf, h, w, c).permute(0, 3, 1, 2) + x


def test_per_frame_norm_matches_original_semantics():
    tt = _randomize(TemporalTransformer(32, heads=4, num_layers=2, norm_num_groups=8, temporal_norm="per_frame"))
    frames = 6
    x = torch.randn(2 * frames, 32, 5, 3)
    x = x * torch.linspace(0.5, 3.0, 2 * frames).view(-1, 1, 1, 1)  # frames of different brightness
    torch.testing.assert_close(tt(x, frames), _original_per_frame_reference(tt, x, frames), atol=1e-5, rtol=1e-5)
    across = TemporalTransformer(32, heads=4, num_layers=2, norm_num_groups=8, temporal_norm="across_frames")
    across.load_state_dict(tt.state_dict())
    assert (across(x, frames) - tt(x, frames)).abs().max() > 1e-2, "the two norms must differ on uneven frames"


def test_position_table_matches_diffusers():
    reference = SinusoidalPositionalEmbedding(40, max_seq_length=32)
    torch.testing.assert_close(sinusoidal_table(32, 40), reference.pe[0])


@pytest.mark.parametrize("use_attention, use_conv", [(True, False), (False, True), (True, True)])
def test_fresh_module_is_identity(use_attention, use_conv):
    module = MotionModule(32, 4, norm_num_groups=8, use_temporal_attention=use_attention, use_temporal_conv=use_conv)
    x = torch.randn(8, 32, 4, 4)
    assert torch.equal(module(x, 4), x)


def test_temporal_conv_mixes_neighbouring_frames_only():
    block = _randomize(TemporalConvBlock(16, kernel_size=3, norm_num_groups=4, temporal_norm="per_frame"))
    frames = 7
    x = torch.randn(frames, 16, 3, 3)
    base = block(x, frames)
    nudged = x.clone()
    nudged[3] += 1.0
    changed = (block(nudged, frames) - base).abs().amax(dim=(1, 2, 3))
    # Two k=3 convolutions reach two frames either side; per-frame norms keep the rest untouched.
    assert torch.all(changed[1:6] > 0) and changed[0] == 0 and changed[6] == 0
    gate = torch.sigmoid(block.merge_factor.detach())
    assert 0 < gate < 1
    with pytest.raises(ValueError, match="odd"):
        TemporalConvBlock(16, kernel_size=2, norm_num_groups=4)


def test_temporal_conv_kernel_size_is_configurable():
    block = TemporalConvBlock(8, kernel_size=5, norm_num_groups=2)
    assert block.conv1.kernel_size == (5, 1, 1) and block.conv2.padding == (2, 0, 0)


def test_sdpa_and_math_backends_agree_on_strided_inputs():
    qkv = torch.randn(64, 16, 3 * 80)
    q, k, v = qkv.split(80, dim=-1)  # views of a fused projection, not contiguous
    torch.testing.assert_close(sdpa_attention(q, k, v, 2), math_attention(q, k, v, 2), atol=1e-5, rtol=1e-5)


def test_backend_switch_and_errors():
    tt = _randomize(TemporalTransformer(16, heads=2, norm_num_groups=4))
    x = torch.randn(8, 16, 2, 2)
    outputs = {}
    for name in ("sdpa", "math"):
        for block in tt.transformer_blocks:
            for attn in block.attention_blocks:
                attn.set_backend(name)
        outputs[name] = tt(x, 8)
    torch.testing.assert_close(outputs["sdpa"], outputs["math"], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown attention backend"):
        check_backend("flash9")
    if importlib.util.find_spec("xformers") is None:
        with pytest.raises(BackendUnavailableError, match="pip install xformers"):
            check_backend("xformers")


def test_too_many_frames_message():
    tt = TemporalTransformer(16, heads=2, norm_num_groups=4, max_seq_length=8)
    with pytest.raises(Exception, match="exceed the adapter's position table of 8.*context windows"):
        tt(torch.randn(9, 16, 2, 2), 9)


# -- exact-path savings: each equals the plain path it replaces ----------------------------------------------


def test_fused_projections_give_the_same_output_and_gradients():
    torch.manual_seed(0)
    module = _randomize(MotionModule(32, 4, temporal_norm="across_frames"))
    x = torch.randn(2 * 6, 32, 4, 4, requires_grad=True)

    def run(fused: bool):
        for m in module.modules():
            if hasattr(m, "fuse_projections"):
                m.fuse_projections = fused
        module.zero_grad()
        x.grad = None
        out = module(x, 6)
        out.square().mean().backward()
        return out.detach(), x.grad.clone(), {n: p.grad.clone() for n, p in module.named_parameters()}

    (out_a, dx_a, grads_a), (out_b, dx_b, grads_b) = run(True), run(False)
    torch.testing.assert_close(out_a, out_b, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(dx_a, dx_b, atol=1e-6, rtol=1e-5)
    for name in grads_b:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("frames,channels,heads", [(16, 64, 8), (6, 32, 2), (24, 128, 8)])
def test_short_attention_equals_sdpa_in_output_and_gradients(frames, channels, heads):
    qkv = torch.randn(40, frames, 3 * channels, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(40, frames, channels, dtype=torch.float64)

    def run(fn):
        qkv.grad = None
        out = fn(*qkv.chunk(3, dim=-1), heads)  # strided views, as the fused projection gives them
        out.backward(grad)
        return out.detach(), qkv.grad.clone()

    (out_a, grad_a), (out_b, grad_b) = run(short_attention.short_attention), run(sdpa_attention)
    torch.testing.assert_close(out_a, out_b, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(grad_a, grad_b, atol=1e-12, rtol=1e-10)
    assert torch.autograd.gradcheck(lambda t: short_attention.short_attention(*t.chunk(3, dim=-1), heads), (qkv[:2].detach().requires_grad_(),))


def test_auto_takes_the_short_path_only_where_it_is_faster():
    assert dispatch.resolve_backend("auto", torch.empty(8, 16, 64), 8) == "short"  # 16 frames, head dim 8
    assert dispatch.resolve_backend("auto", torch.empty(8, 32, 64), 8) == "sdpa"  # too many frames
    assert dispatch.resolve_backend("auto", torch.empty(8, 16, 320), 8) == "sdpa"  # head dim 40
    assert dispatch.resolve_backend("auto", torch.empty(8, 16, 64, dtype=torch.bfloat16), 8) == "sdpa"
    assert dispatch.resolve_backend("sdpa", torch.empty(8, 16, 64), 8) == "sdpa"  # an explicit choice is kept


def test_motion_module_on_the_short_path_equals_sdpa_in_output_and_gradients():
    module = _randomize(MotionModule(32, 4, temporal_norm="across_frames"))
    x = torch.randn(2 * 16, 32, 3, 3, requires_grad=True)

    def run(backend: str):
        for m in module.modules():
            if hasattr(m, "set_backend"):
                m.set_backend(backend)
        module.zero_grad()
        x.grad = None
        out = module(x, 16)
        out.square().mean().backward()
        return out.detach(), x.grad.clone(), {n: p.grad.clone() for n, p in module.named_parameters()}

    (out_a, dx_a, grads_a), (out_b, dx_b, grads_b) = run("auto"), run("sdpa")
    # fp32 rounding of two summation orders, relative to the values' size (the weights here are large)
    for a, b in [(out_a, out_b), (dx_a, dx_b), *((grads_a[n], grads_b[n]) for n in grads_b)]:
        torch.testing.assert_close(a, b, atol=1e-6 * float(b.abs().max()), rtol=1e-5)


def test_cpu_chunks_of_sequences_give_the_same_tokens(monkeypatch):
    import motionkit.modules.temporal_transformer as tt_module

    module = _randomize(MotionModule(32, 4, temporal_norm="across_frames"))
    x = torch.randn(2 * 8, 32, 6, 6)
    with torch.no_grad():
        module.temporal_transformer.chunk_sequences = False
        whole = module(x, 8)
        module.temporal_transformer.chunk_sequences = True
        calls = []
        handle = module.temporal_transformer.proj_in.register_forward_hook(lambda *_: calls.append(1))
        monkeypatch.setattr(tt_module, "CPU_CHUNK_ELEMENTS", 8 * 32 * 5)  # 5 sequences a chunk: 72 -> 15 chunks
        chunked = module(x, 8)
        handle.remove()
    assert len(calls) == 15
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", ["cheap", "feed_forward"])
def test_selective_recompute_gives_the_same_gradients(mode):
    module = _randomize(MotionModule(32, 4, temporal_norm="across_frames", use_temporal_conv=True))
    x = torch.randn(2 * 6, 32, 4, 4, requires_grad=True)
    ff_calls = []
    block = module.temporal_transformer.transformer_blocks[0]
    block.ff.register_forward_pre_hook(lambda *_: ff_calls.append(1))

    def run(recompute: str):
        module.set_recompute(recompute)
        module.zero_grad()
        x.grad = None
        ff_calls.clear()
        out = module(x, 6)
        out.square().mean().backward()
        return out.detach(), x.grad.clone(), {n: p.grad.clone() for n, p in module.named_parameters()}, len(ff_calls)

    (out_a, dx_a, grads_a, calls_a), (out_b, dx_b, grads_b, calls_b) = run(mode), run("none")
    assert calls_b == 1 and calls_a == 2, "backward reruns the recomputed parts of the module"
    torch.testing.assert_close(out_a, out_b, atol=0, rtol=0)
    torch.testing.assert_close(dx_a, dx_b, atol=1e-6, rtol=1e-5)
    for name in grads_b:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-5, msg=name)
    with pytest.raises(ValueError, match="unknown recompute mode"):
        module.set_recompute("everything")

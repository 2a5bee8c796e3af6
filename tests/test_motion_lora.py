"""Motion LoRAs: original v2 files, diffusers files, applying, stacking, scaling, removing, saving."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file

from motionkit import (
    FormatError,
    LayoutMismatchError,
    MotionAdapter,
    MotionkitError,
    apply_motion_lora,
    detect_format,
    inject,
    load_motion_lora,
    remove_motion_lora,
    save_adapter,
    save_motion_lora,
)
from motionkit.formats import set_motion_lora_scale

TINY = dict(block_out_channels=(32, 64), norm_num_groups=8, num_attention_heads=4, use_mid_block=True)


def tiny_adapter(seed: int = 0, **overrides) -> MotionAdapter:
    adapter = MotionAdapter(**{**TINY, **overrides})
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1 + 0.05)
    return adapter.eval()


def v2_lora_state(adapter: MotionAdapter, rank: int = 4, seed: int = 1, scale: float = 0.05) -> dict[str, torch.Tensor]:
    """Keys as the released v2 camera-motion LoRAs name them (old attention-processor LoRA layout)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in adapter.named_modules():
        if name.endswith(".to_q") and ".attention_blocks." in name:
            base = name[: -len(".to_q")]
            dim = module.in_features
            for proj in ("to_q", "to_k", "to_v", "to_out"):
                state[f"{base}.processor.{proj}_lora.down.weight"] = torch.randn(rank, dim, generator=gen) * scale
                state[f"{base}.processor.{proj}_lora.up.weight"] = torch.randn(dim, rank, generator=gen) * scale
    return state


def diffusers_converted(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What diffusers' motion-LoRA conversion script writes: same factors, diffusers names, ``unet.`` prefix."""
    out = {}
    for key, value in state.items():
        new = (
            key.replace(".attention_blocks.0", ".attn1")
            .replace(".attention_blocks.1", ".attn2")
            .replace(".temporal_transformer", "")
        )
        out[f"unet.{new}"] = value
    return out


def module_outputs(adapter: MotionAdapter, frames: int = 3) -> torch.Tensor:
    """Every motion module run on a fixed input: cheap and sensitive to every attention weight."""
    gen = torch.Generator().manual_seed(7)
    outs = []
    with torch.no_grad():
        for module in adapter.motion_modules():
            c = module.temporal_transformer.proj_in.in_features
            x = torch.randn(2 * frames, c, 4, 4, generator=gen)
            outs.append(module(x, frames).flatten())
    return torch.cat(outs)


@pytest.fixture
def lora_file(tmp_path):
    adapter = tiny_adapter()
    path = tmp_path / "v2_lora_PanLeft.ckpt"
    torch.save({"state_dict": v2_lora_state(adapter)}, path)
    return path


def test_v2_lora_file_loads_with_rank_from_shapes(lora_file, tmp_path):
    lora = load_motion_lora(lora_file)
    assert lora.source == "animatediff"
    assert len(lora.targets) == 11 * 2 * 4  # 11 modules (4 down, 6 up, 1 mid) x 2 attentions x q/k/v/out
    assert set(lora.ranks.values()) == {4}
    assert any(t.endswith("attention_blocks.1.to_out.0") for t in lora.targets)
    info = detect_format(lora_file)
    assert info.format == "motion-lora" and "rank 4" in info.layout
    # diffusers' converted layout gives the same factors
    save_file(diffusers_converted(v2_lora_state(tiny_adapter())), str(tmp_path / "df_lora.safetensors"))
    other = load_motion_lora(tmp_path / "df_lora.safetensors")
    assert other.source == "diffusers" and other.targets == lora.targets
    assert all(torch.equal(other.down[t], lora.down[t]) and torch.equal(other.up[t], lora.up[t]) for t in lora.targets)


def test_apply_scale_stack_and_remove(lora_file):
    adapter = tiny_adapter()
    before_state = {k: v.clone() for k, v in adapter.state_dict().items()}
    base = module_outputs(adapter)
    state_a = torch.load(lora_file, weights_only=True)["state_dict"]
    state_b = v2_lora_state(adapter, rank=2, seed=5)
    from motionkit.formats.motion_lora import lora_from_state_dict

    lora_a, lora_b = load_motion_lora(lora_file), lora_from_state_dict(state_b)

    assert apply_motion_lora(adapter, lora_a, scale=0.0, name="pan") == "pan"
    assert torch.equal(module_outputs(adapter), base)  # scale 0 changes nothing
    set_motion_lora_scale(adapter, "pan", 1.0)
    out_a = module_outputs(adapter)
    assert (out_a - base).abs().max() > 1e-3  # applying changes outputs

    # the update is exactly scale * up @ down on every projection
    target = lora_a.targets[0]
    layer = dict(adapter.named_modules())[target]
    eye = torch.eye(layer.in_features)
    with torch.no_grad():
        weight_a = (layer(eye) - layer.base_layer(eye)).T
    torch.testing.assert_close(weight_a, lora_a.delta(target), rtol=1e-5, atol=1e-6)
    delta = state_a[_orig_key(target, "up")] @ state_a[_orig_key(target, "down")]
    torch.testing.assert_close(weight_a, delta, rtol=1e-5, atol=1e-6)  # W += up @ down, as the original merges

    apply_motion_lora(adapter, lora_b, scale=0.5, name="zoom")
    out_ab = module_outputs(adapter)
    with torch.no_grad():
        weight_ab = (layer(eye) - layer.base_layer(eye)).T
    torch.testing.assert_close(weight_ab, lora_a.delta(target) + 0.5 * lora_b.delta(target), rtol=1e-5, atol=1e-6)

    remove_motion_lora(adapter, "pan")
    out_b = module_outputs(adapter)
    # stacked deltas add up (to first order: the LoRAs are small)
    second_order = ((out_ab - base) - (out_a - base) - (out_b - base)).abs().max()
    assert second_order < 0.05 * (out_ab - base).abs().max()

    remove_motion_lora(adapter)
    assert torch.equal(module_outputs(adapter), base)
    after = adapter.state_dict()
    assert after.keys() == before_state.keys()
    assert all(torch.equal(after[k], before_state[k]) for k in after)
    assert not getattr(adapter, "peft_config", None)


def _orig_key(target: str, side: str) -> str:
    proj = target.rsplit(".", 1)[-1] if not target.endswith("to_out.0") else "to_out"
    base = target[: -len(".to_out.0")] if target.endswith("to_out.0") else target.rsplit(".", 1)[0]
    return f"{base}.processor.{proj}_lora.{side}.weight"


def test_saved_lora_round_trips_and_loads_in_diffusers(tmp_path, lora_file):
    from diffusers import AnimateDiffPipeline, UNet2DConditionModel, UNetMotionModel
    from diffusers import MotionAdapter as DiffusersMotionAdapter

    lora = load_motion_lora(lora_file)
    out = save_motion_lora(lora, tmp_path / "lora.safetensors")
    again = load_motion_lora(out)
    assert again.source == "motionkit" and again.targets == lora.targets
    assert all(torch.equal(again.up[t], lora.up[t]) and torch.equal(again.down[t], lora.down[t]) for t in lora.targets)

    # saving from an adapter with the LoRA applied gives the same file contents
    adapter = tiny_adapter(temporal_norm="across_frames")
    apply_motion_lora(adapter, lora, name="pan", scale=0.7)
    save_motion_lora(adapter, tmp_path / "from_adapter.safetensors", name="pan")
    from_adapter = load_motion_lora(tmp_path / "from_adapter.safetensors")
    assert all(torch.equal(from_adapter.up[t], lora.up[t]) for t in lora.targets)

    def unet2d():
        torch.manual_seed(0)
        return UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=2, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16, norm_num_groups=8,
            attention_head_dim=4, sample_size=8,
        ).eval()

    plain = tiny_adapter(temporal_norm="across_frames")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_adapter(plain, tmp_path / "df", format="diffusers")
    theirs = UNetMotionModel.from_unet2d(unet2d(), DiffusersMotionAdapter.from_pretrained(tmp_path / "df")).eval()
    # what AnimateDiffPipeline.load_lora_weights does for the UNet
    state, alphas = AnimateDiffPipeline.lora_state_dict(str(tmp_path / "lora.safetensors"))
    AnimateDiffPipeline.load_lora_into_unet(state, alphas, unet=theirs, adapter_name="pan")
    theirs.set_adapters(["pan"], [0.7])
    ours = inject(unet2d(), adapter)
    gen = torch.Generator().manual_seed(3)
    sample, text = torch.randn(1, 4, 3, 8, 8, generator=gen), torch.randn(1, 5, 16, generator=gen)
    with torch.no_grad():
        expected = ours(sample, 4, text).sample
        got = theirs(sample, 4, text.repeat_interleave(3, 0)).sample
    assert (got - expected).abs().max() < 1e-5


def test_lora_errors_are_one_line(tmp_path, lora_file):
    adapter = tiny_adapter(use_mid_block=False)  # a v3-shaped adapter: no mid block for the v2 LoRA
    with pytest.raises(LayoutMismatchError, match="lacks .*mid_block"):
        apply_motion_lora(adapter, lora_file)
    spatial = {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight": torch.ones(2, 4),
               "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.up.weight": torch.ones(4, 2)}
    save_file(spatial, str(tmp_path / "domain_adapter.safetensors"))
    with pytest.raises(FormatError, match="spatial LoRA such as the v3 domain adapter"):
        load_motion_lora(tmp_path / "domain_adapter.safetensors")
    adapter = tiny_adapter()
    apply_motion_lora(adapter, lora_file, name="pan")
    with pytest.raises(FormatError, match="motion LoRAs applied \\(pan\\).*remove_motion_lora"):
        save_adapter(adapter, tmp_path / "x")
    with pytest.raises(MotionkitError, match="already applied"):
        apply_motion_lora(adapter, lora_file, name="pan")

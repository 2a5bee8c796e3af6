"""AnimateDiff v3's domain adapter (``v3_sd15_adapter.ckpt``) through ``--lora``: an image LoRA in diffusers'
attention-processor layout keyed from the UNet (no ``unet.`` prefix) on every attention projection. AnimateDiff
applies it as ``W += adapter_lora_scale * up @ down`` (``load_diffusers_lora``); motionkit must compute the same,
and refuse a LoRA that matches no layer instead of applying nothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from motionkit import FormatError
from motionkit.pipeline.lora import apply_loras
from motionkit.tiny import tiny_pipeline_components

RANK = 4
PROJECTIONS = ("to_q", "to_k", "to_v", "to_out")


def _attention_layers(unet) -> dict[str, torch.nn.Module]:
    """Every attention projection of the UNet's spatial transformers, by the name the domain adapter keys it."""
    out = {}
    for name, module in unet.named_modules():
        if name.endswith((".attn1", ".attn2")) and ".transformer_blocks." in name:
            for proj in PROJECTIONS:
                out[f"{name}.{proj}"] = module.to_out[0] if proj == "to_out" else getattr(module, proj)
    return out


def domain_adapter(unet, seed: int = 0) -> dict[str, torch.Tensor]:
    """``v3_sd15_adapter.ckpt``'s key layout: ``<module>.processor.<proj>_lora.{down,up}.weight``."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for target, layer in _attention_layers(unet).items():
        module, proj = target.rsplit(".", 1)
        state[f"{module}.processor.{proj}_lora.down.weight"] = 0.1 * torch.randn(RANK, layer.in_features, generator=gen)
        state[f"{module}.processor.{proj}_lora.up.weight"] = 0.1 * torch.randn(layer.out_features, RANK, generator=gen)
    return state


def test_the_domain_adapter_applies_as_animatediff_applies_it(tmp_path):
    reference_unet = tiny_pipeline_components(seed=0)["unet"]
    state = domain_adapter(reference_unet)
    path = tmp_path / "v3_sd15_adapter.ckpt"
    torch.save({"state_dict": state, "animatediff_config": {"note": "plain data"}}, path)
    scale = 0.8
    components = tiny_pipeline_components(seed=0)
    assert apply_loras(components, [(path, scale)]) == ["lora0_v3_sd15_adapter"]
    layers = _attention_layers(components["unet"])
    originals = _attention_layers(reference_unet)
    assert len(layers) == len(state) // 2 > 0
    x = torch.randn(3, 768)
    for target, layer in layers.items():
        module, proj = target.rsplit(".", 1)
        base = originals[target]
        down = state[f"{module}.processor.{proj}_lora.down.weight"]
        up = state[f"{module}.processor.{proj}_lora.up.weight"]
        merged = base.weight + scale * up @ down  # AnimateDiff's load_diffusers_lora
        inputs = x[:, : base.in_features]
        expected = F.linear(inputs, merged, base.bias)
        assert (layer(inputs) - expected).abs().max() < 1e-5, target


def test_a_lora_that_matches_no_layer_is_refused(tmp_path):
    components = tiny_pipeline_components(seed=0)
    # A motion LoRA passed as an image LoRA: its keys name motion modules the image UNet does not have.
    motion = {
        "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor."
        "to_q_lora.down.weight": torch.zeros(2, 32),
        "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor."
        "to_q_lora.up.weight": torch.zeros(32, 2),
    }
    torch.save(motion, tmp_path / "motion.ckpt")
    with pytest.raises(FormatError, match="no layer of the base model matched|not an image LoRA"):
        apply_loras(components, [(tmp_path / "motion.ckpt", 1.0)])
    from safetensors.torch import save_file

    save_file({"lora_te9_unknown.lora_down.weight": torch.zeros(2, 16), "lora_te9_unknown.lora_up.weight": torch.zeros(16, 2)},
              str(tmp_path / "nowhere.safetensors"))
    with pytest.raises(FormatError):
        apply_loras(components, [(tmp_path / "nowhere.safetensors", 1.0)])
    assert not getattr(components["unet"], "peft_config", None)

"""MotionAdapter: presets, fitting any UNet, save/load round trip, backend switch."""

import pytest
import torch

from motionkit import MotionAdapter, MotionkitError
from motionkit.injection import unet_layout
from motionkit.presets import PRESETS
from motionkit.tiny import randomize_, tiny_unet

# Parameter counts of the released modules (diffusers MotionAdapter built with the same layouts).
RELEASED_PARAMETERS = {
    "animatediff-v1": 417.1e6,
    "animatediff-v2": 453.2e6,
    "animatediff-v3": 417.1e6,
    "animatediff-sdxl-beta": 236.8e6,
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_with_released_sizes(name):
    with torch.device("meta"):
        adapter = MotionAdapter.from_preset(name)
    params = sum(p.numel() for p in adapter.parameters())
    if name in RELEASED_PARAMETERS:
        assert abs(params - RELEASED_PARAMETERS[name]) < 0.05e6, params
    else:
        assert params > RELEASED_PARAMETERS["animatediff-v3" if "sd15" in name else "animatediff-sdxl-beta"]
    assert adapter.config.use_temporal_conv == name.startswith("motionkit")


def test_preset_overrides_and_bad_values():
    adapter = MotionAdapter.from_preset("animatediff-v3", block_out_channels=(32, 64), norm_num_groups=8, max_seq_length=24)
    assert adapter.config.max_seq_length == 24 and len(adapter.down_blocks) == 2
    with pytest.raises(MotionkitError, match="unknown adapter preset"):
        MotionAdapter.from_preset("animatediff-v9")
    with pytest.raises(MotionkitError, match="temporal_norm"):
        MotionAdapter(block_out_channels=(32,), norm_num_groups=8, temporal_norm="sometimes")
    with pytest.raises(MotionkitError, match="attention heads"):
        MotionAdapter(block_out_channels=(32,), norm_num_groups=8, num_attention_heads=5)


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl", "medium-sd"])
def test_from_unet_fits_any_layout(name):
    unet = tiny_unet(name)
    adapter = MotionAdapter.from_unet(unet, preset="animatediff-v2")
    assert adapter.layout().block_out_channels == unet_layout(unet).block_out_channels
    assert adapter.layout().layers_per_block == unet_layout(unet).layers_per_block
    assert [len(b.motion_modules) for b in adapter.up_blocks] == [len(b.resnets) for b in unet.up_blocks]


def test_save_pretrained_round_trip_is_exact(tmp_path):
    adapter = randomize_(
        MotionAdapter.from_unet(tiny_unet("tiny-sd"), preset="motionkit-sd15", image_cond_channels=5, num_attention_heads=2)
    )
    adapter.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "diffusion_pytorch_model.safetensors").exists()
    loaded = MotionAdapter.from_pretrained(tmp_path / "adapter")
    public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(adapter.config)
    assert loaded.state_dict().keys() == adapter.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in adapter.state_dict().items())
    assert not any(k.endswith("pos_table") for k in loaded.state_dict()), "position tables are recomputed, never saved"


def test_state_dict_uses_original_animatediff_key_names():
    adapter = MotionAdapter(block_out_channels=(32, 64), norm_num_groups=8, use_mid_block=True)
    keys = set(adapter.state_dict())
    assert "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight" in keys
    assert "mid_block.motion_modules.0.temporal_transformer.proj_out.bias" in keys
    assert "up_blocks.1.motion_modules.2.temporal_transformer.transformer_blocks.0.ff.net.0.proj.weight" in keys


def test_set_attention_backend_reaches_every_attention():
    adapter = MotionAdapter(block_out_channels=(32, 64), norm_num_groups=8)
    adapter.set_attention_backend("math")
    assert adapter.attention_backend == "math"
    with pytest.raises(ValueError, match="unknown attention backend"):
        adapter.set_attention_backend("fast")


def test_adapter_has_no_forward_of_its_own():
    with pytest.raises(MotionkitError, match="inject"):
        MotionAdapter(block_out_channels=(32,), norm_num_groups=8)(torch.zeros(1))

"""Adapter formats: round trips, diffusers interop, original AnimateDiff files, safety and corrupt input."""

from __future__ import annotations

import json
import os
import pickle
import warnings

import pytest
import torch
from safetensors.torch import save_file

from motionkit import FormatError, MotionAdapter, MotionkitError, detect_format, inject, load_adapter, save_adapter
from motionkit.formats.motionkit_format import plain_config

TINY = dict(block_out_channels=(32, 64), norm_num_groups=8, num_attention_heads=4)


def randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Non-zero everywhere: a fresh adapter's zero proj_out would make equivalence checks vacuous."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale + scale / 2)
    return module


def tiny_adapter(seed: int = 0, **overrides) -> MotionAdapter:
    return randomise(MotionAdapter(**{**TINY, **overrides}), seed)


def tiny_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        norm_num_groups=8,
        attention_head_dim=4,
        sample_size=16,
    ).eval()


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def original_state_dict(adapter: MotionAdapter, table_length: int | None) -> dict[str, torch.Tensor]:
    """The adapter's weights as an original AnimateDiff release stores them (with pe tables)."""
    state = {k: v.clone() for k, v in adapter.state_dict().items()}
    if table_length:
        for key, value in list(state.items()):
            if key.endswith("attention_blocks.0.to_q.weight") or key.endswith("attention_blocks.1.to_q.weight"):
                state[key.replace("to_q.weight", "pos_encoder.pe")] = torch.randn(1, table_length, value.shape[0])
    return state


# -- round trips ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt,name",
    [("motionkit", "folder"), ("motionkit", "single.safetensors"), ("diffusers", "df"), ("animatediff", "ad.safetensors")],
)
@pytest.mark.parametrize("norm", ["per_frame", "across_frames"])
def test_round_trip_is_exact(tmp_path, fmt, name, norm):
    adapter = tiny_adapter(use_mid_block=True, temporal_norm=norm, max_seq_length=24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_adapter(adapter, tmp_path / name, format=fmt)
    loaded = load_adapter(tmp_path / name)
    assert_same_weights(adapter, loaded)
    assert plain_config(loaded) == plain_config(adapter)
    assert detect_format(tmp_path / name).format == fmt


def test_motionkit_formats_keep_conv_image_cond_and_half_precision(tmp_path):
    adapter = tiny_adapter(use_temporal_conv=True, temporal_conv_kernel_size=5, image_cond_channels=5).half()
    for name in ("folder", "single.safetensors"):
        save_adapter(adapter, tmp_path / name)
        loaded = load_adapter(tmp_path / name)
        assert_same_weights(adapter, loaded)
        assert plain_config(loaded) == plain_config(adapter)
        assert detect_format(tmp_path / name).dtype == "float16"
    single = json.loads(__import__("safetensors").safe_open(str(tmp_path / "single.safetensors"), "pt").metadata()["config"])
    assert single["temporal_conv_kernel_size"] == 5


def test_writes_are_atomic_and_replace_old_output(tmp_path):
    save_adapter(tiny_adapter(seed=1), tmp_path / "out")
    save_adapter(tiny_adapter(seed=2), tmp_path / "out")
    assert_same_weights(load_adapter(tmp_path / "out"), tiny_adapter(seed=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporaries left behind


# -- diffusers interop ------------------------------------------------------------------------------


def _diffusers_unet(tmp_path, adapter):
    from diffusers import MotionAdapter as DiffusersMotionAdapter
    from diffusers import UNetMotionModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_adapter(adapter, tmp_path / "df", format="diffusers")
    theirs, info = DiffusersMotionAdapter.from_pretrained(tmp_path / "df", output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    return UNetMotionModel.from_unet2d(tiny_unet(), theirs).eval()


def test_diffusers_export_matches_motionkit_outputs(tmp_path):
    adapter = tiny_adapter(use_mid_block=True, temporal_norm="across_frames")
    theirs = _diffusers_unet(tmp_path, adapter)
    ours = inject(tiny_unet(), adapter)
    gen = torch.Generator().manual_seed(1)
    b, f = 2, 3
    sample = torch.randn(b, 4, f, 8, 8, generator=gen)
    text = torch.randn(b, 7, 16, generator=gen)
    with torch.no_grad():
        expected = ours(sample, 10, text).sample
        got = theirs(sample, 10, text.repeat_interleave(f, dim=0)).sample
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-5
    # the motion modules really act: without them the output differs
    with torch.no_grad():
        plain = tiny_unet()(sample.transpose(1, 2).reshape(b * f, 4, 8, 8), 10, text.repeat_interleave(f, 0)).sample
    assert (plain.reshape(b, f, 4, 8, 8).transpose(1, 2) - expected).abs().max() > 1e-3


def test_pia_adapter_exports_as_nine_channel_conv_in(tmp_path):
    adapter = tiny_adapter(image_cond_channels=5, use_mid_block=True, temporal_norm="across_frames")
    theirs = _diffusers_unet(tmp_path, adapter)
    assert theirs.conv_in.in_channels == 9
    ours = inject(tiny_unet(), adapter)
    gen = torch.Generator().manual_seed(2)
    sample, cond = torch.randn(1, 4, 3, 8, 8, generator=gen), torch.randn(1, 5, 3, 8, 8, generator=gen)
    text = torch.randn(1, 7, 16, generator=gen)
    with torch.no_grad():
        expected = ours(sample, 5, text, image_cond=cond).sample
        got = theirs(torch.cat([sample, cond], dim=1), 5, text.repeat_interleave(3, 0)).sample
    assert (got - expected).abs().max() < 1e-5
    # and back: channels [4:] of conv_in become image_cond_conv, its bias is ignored
    loaded = load_adapter(tmp_path / "df")
    assert loaded.config.image_cond_channels == 5
    assert torch.equal(loaded.image_cond_conv.weight, adapter.image_cond_conv.weight)


def test_bare_diffusers_file_and_diffusers_defaults(tmp_path):
    from motionkit.formats.diffusers_format import to_diffusers

    adapter = tiny_adapter(temporal_norm="across_frames")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tensors, _ = to_diffusers(adapter)
    save_file(tensors, str(tmp_path / "bare.safetensors"))
    loaded = load_adapter(tmp_path / "bare.safetensors", num_attention_heads=4, norm_num_groups=8)
    assert_same_weights(adapter, loaded)
    assert loaded.config.temporal_norm == "across_frames"
    info = detect_format(tmp_path / "bare.safetensors")
    assert (info.format, info.version, info.max_frames) == ("diffusers", "v3", 32)


def test_diffusers_refuses_what_it_cannot_hold(tmp_path):
    with pytest.raises(FormatError, match="temporal convolutions.*format='motionkit'"):
        save_adapter(tiny_adapter(use_temporal_conv=True), tmp_path / "a", format="diffusers")
    with pytest.raises(FormatError, match="3 attentions per transformer block"):
        save_adapter(tiny_adapter(attentions_per_block=3), tmp_path / "b", format="diffusers")
    with pytest.warns(UserWarning, match="across frames"):
        save_adapter(tiny_adapter(temporal_norm="per_frame"), tmp_path / "c", format="diffusers")
    with pytest.raises(FormatError, match="AnimateDiff layout cannot hold"):
        save_adapter(tiny_adapter(use_temporal_conv=True), tmp_path / "d.safetensors", format="animatediff")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # refusals write nothing


# -- original AnimateDiff files ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
@pytest.mark.parametrize(
    "layout,table,version,norm",
    [
        (dict(), 24, "v1", "per_frame"),
        (dict(use_mid_block=True), 32, "v2", "per_frame"),
        (dict(), 32, "v3", "per_frame"),
        (dict(block_out_channels=(32, 64, 64)), 32, "sdxl-beta", "across_frames"),
        (dict(), None, "v3", "per_frame"),
        # Labels follow the structure, not just the table: a mid block is v2 whatever its table says, and the
        # SDXL layout with a 24-frame table is Hotshot-XL renamed to AnimateDiff's keys (normalised per frame).
        (dict(use_mid_block=True), 24, "v2", "per_frame"),
        (dict(block_out_channels=(32, 64, 64)), 24, "hotshot-xl", "per_frame"),
    ],
)
def test_original_files_load_with_version_and_numerics(tmp_path, suffix, layout, table, version, norm):
    adapter = tiny_adapter(seed=3, **layout)
    state = original_state_dict(adapter, table)
    path = tmp_path / f"mm{suffix}"
    if suffix == ".ckpt":
        torch.save({"state_dict": state, "animatediff_config": {"note": "plain data"}, "global_step": 7}, path)
    else:
        save_file(state, str(path))
    info = detect_format(path)
    assert (info.format, info.version, info.temporal_norm, info.max_frames) == ("animatediff", version, norm, table or 32)
    assert info.tensors == len(state)
    assert info.parameters == sum(p.numel() for p in adapter.parameters())
    loaded = load_adapter(path, num_attention_heads=4, norm_num_groups=8)
    assert_same_weights(adapter, loaded)
    assert loaded.config.temporal_norm == norm and loaded.config.max_seq_length == (table or 32)
    # overrides win over the format's defaults
    assert load_adapter(path, num_attention_heads=4, temporal_norm="across_frames", max_seq_length=40).config.max_seq_length == 40


def test_original_defaults_heads_and_groups_and_infers_non_standard_sizes(tmp_path):
    adapter = tiny_adapter(block_out_channels=(48, 96, 96), layers_per_block=(1, 2, 3), num_attention_heads=8,
                           norm_num_groups=16, transformer_layers_per_block=2, use_mid_block=True, mid_block_layers=2)
    save_file(original_state_dict(adapter, 32), str(tmp_path / "odd.safetensors"))
    loaded = load_adapter(tmp_path / "odd.safetensors")
    assert loaded.config.num_attention_heads == 8  # AnimateDiff's default
    assert loaded.config.norm_num_groups == 24  # 32 does not divide 48: lowered to a divisor of every block
    assert tuple(loaded.config.layers_per_block) == (1, 2, 3)
    assert loaded.config.transformer_layers_per_block == 2 and loaded.config.mid_block_layers == 2
    assert_same_weights(adapter, loaded)


def test_whole_unet_training_checkpoint_keeps_motion_modules(tmp_path):
    adapter = tiny_adapter()
    state = original_state_dict(adapter, 32)
    state.update({"conv_in.weight": torch.randn(32, 4, 3, 3), "down_blocks.0.resnets.0.conv1.weight": torch.randn(2)})
    torch.save({"epoch": 1, "global_step": 2, "state_dict": state}, tmp_path / "train.ckpt")
    assert_same_weights(adapter, load_adapter(tmp_path / "train.ckpt", num_attention_heads=4, norm_num_groups=8))
    assert "whole-UNet" in detect_format(tmp_path / "train.ckpt").notes[0]


def _full_size_original_ckpt(path, preset: str, table: int) -> int:
    """A checkpoint with every key and shape of a released module, cheaply: each tensor is a random row
    broadcast over its shape (torch.save stores only the row), so the file stays a few MB."""
    with torch.device("meta"):
        reference = MotionAdapter.from_preset(preset)
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape[-1], generator=gen).expand(v.shape) for k, v in reference.state_dict().items()}
    for key, value in list(state.items()):
        if key.endswith(".to_q.weight"):
            state[key.replace("to_q.weight", "pos_encoder.pe")] = torch.randn(value.shape[0]).expand(1, table, value.shape[0])
    torch.save(state, path)
    return sum(p.numel() for p in reference.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("preset,version,mid,params", [("animatediff-v2", "v2", True, 453_209_280), ("animatediff-v3", "v3", False, None)])
def test_full_size_sd15_checkpoints_load_without_missing_or_unexpected_keys(tmp_path, preset, version, mid, params):
    from diffusers import UNet2DConditionModel

    from motionkit.injection import unet_layout

    path = tmp_path / "mm_sd15.ckpt"
    expected_params = _full_size_original_ckpt(path, preset, 32)
    if params:
        assert expected_params == params  # the v2 count diffusers' MotionAdapter() has
    info = detect_format(path)
    assert (info.version, info.temporal_norm, info.parameters) == (version, "per_frame", expected_params)
    adapter = load_adapter(path)  # strict: raises on any missing or unexpected key
    assert adapter.config.use_mid_block is mid and adapter.config.num_attention_heads == 8
    assert sum(p.numel() for p in adapter.parameters()) == expected_params
    with torch.device("meta"):
        unet = UNet2DConditionModel()  # SD1.5's default config, no weights
    layout = unet_layout(unet)
    assert adapter.layout().block_out_channels == layout.block_out_channels
    assert adapter.layout().layers_per_block == layout.layers_per_block
    assert adapter.layout().mid_block_layers in (0, layout.mid_block_layers)


# -- strictness, safety, corrupt files ---------------------------------------------------------------


def test_strict_loading_names_missing_and_unexpected_keys(tmp_path):
    state = original_state_dict(tiny_adapter(), 32)
    state["down_blocks.0.motion_modules.0.temporal_transformer.extra.weight"] = torch.randn(3)
    del state["up_blocks.0.motion_modules.1.temporal_transformer.transformer_blocks.0.ff_norm.bias"]
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(FormatError) as err:
        load_adapter(tmp_path / "bad.safetensors", num_attention_heads=4, norm_num_groups=8)
    message = str(err.value)
    assert "\n" not in message
    assert "ff_norm.bias" in message and "extra.weight" in message


class _Exploit:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("writer", ["torch_zip", "raw_pickle"])
def test_pickles_with_code_are_refused_without_running_it(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    payload = {"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": torch.ones(2), "x": _Exploit(str(marker))}
    if writer == "torch_zip":
        torch.save(payload, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(payload, handle, protocol=2)
    for call in (load_adapter, detect_format):
        with pytest.raises(FormatError, match="refused to load.*nothing in it ran") as err:
            call(path)
        assert "\n" not in str(err.value)
    assert not marker.exists()


def test_corrupt_files_give_one_clear_error(tmp_path):
    save_adapter(tiny_adapter(), tmp_path / "good.safetensors")
    data = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.safetensors").write_bytes(os.urandom(4096))
    (tmp_path / "noise.ckpt").write_bytes(os.urandom(4096))
    torch.save(original_state_dict(tiny_adapter(), 32), tmp_path / "good.ckpt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "good.ckpt").read_bytes()[:3000])
    for name, pattern in [
        ("cut.safetensors", "truncated or corrupt"),
        ("noise.safetensors", "truncated or corrupt"),
        ("noise.ckpt", "not a readable PyTorch checkpoint"),
        ("cut.ckpt", "not a readable PyTorch checkpoint"),
    ]:
        with pytest.raises(FormatError, match=pattern) as err:
            load_adapter(tmp_path / name)
        assert "\n" not in str(err.value) and name in str(err.value)


def test_unknown_layouts_say_what_was_recognised(tmp_path):
    save_file({"conv.weight": torch.ones(2), "bias": torch.ones(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(FormatError, match="no motion-module keys \\(2 tensors, e.g. 'bias'"):
        load_adapter(tmp_path / "other.safetensors")
    save_file({"down_blocks.0.motion_modules.0.weird.weight": torch.ones(2)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(FormatError, match="motion-module keys in no known layout"):
        detect_format(tmp_path / "odd.safetensors")
    save_file({"a.attention_blocks.0.processor.to_q_lora.down.weight": torch.ones(2, 2)}, str(tmp_path / "l.safetensors"))
    with pytest.raises(FormatError, match="motion LoRA, not a motion adapter"):
        load_adapter(tmp_path / "l.safetensors")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(FormatError, match="unknown weights file type"):
        load_adapter(tmp_path / "x.txt")
    with pytest.raises(MotionkitError, match="unknown adapter option 'heads'"):
        load_adapter(tmp_path / "other.safetensors", heads=4)


def test_frames_beyond_the_position_table_raise_a_clear_error():
    adapter = tiny_adapter(max_seq_length=4)
    unet = inject(tiny_unet(), adapter)
    with pytest.raises(MotionkitError, match="5 frames exceed the adapter's position table of 4: .*context windows"):
        with torch.no_grad():
            unet(torch.randn(1, 4, 5, 8, 8), 1, torch.randn(1, 3, 16))

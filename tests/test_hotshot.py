"""Hotshot-XL temporal layers (``hsxl_temporal_layers.safetensors``): the real key set and shapes load onto an
SDXL adapter, and each loaded module computes what Hotshot-XL's ``TransformerTemporal`` computes.

The reference below is written from Hotshot-XL's ``hotshot_xl/models/transformer_temporal.py``: per-frame
GroupNorm(32, eps 1e-6) -> proj_in -> per attention: LayerNorm, ``(b f) s c -> (b s) f c``, + the sinusoid
table ``positional_encoding[:, :f]``, diffusers ``Attention`` (8 heads, scale d^-0.5, no q/k/v bias, biased
``to_out.0``), back, + residual -> LayerNorm -> GEGLU feed-forward + residual -> proj_out -> + the input.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from motionkit import FormatError, detect_format, load_adapter
from motionkit.cli import main
from motionkit.formats.checkpoint import Checkpoint
from motionkit.formats.detect import convert

SDXL_CHANNELS = (320, 640, 1280)
HEADS = 8


def hotshot_table(length: int, dim: int) -> torch.Tensor:
    """Hotshot-XL's PositionalEncoding buffer, ``[1, length, dim]``."""
    table = torch.zeros(1, length, dim)
    position = torch.arange(length).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table[0, :, 0::2] = torch.sin(position * div_term)
    table[0, :, 1::2] = torch.cos(position * div_term)
    return table


def layer_shapes(c: int, frames: int = 24) -> dict[str, tuple[int, ...]]:
    """The keys and shapes of one ``TransformerTemporal(8 heads, in_channels=c)``'s state dict."""
    shapes: dict[str, tuple[int, ...]] = {
        "norm.weight": (c,), "norm.bias": (c,),
        "proj_in.weight": (c, c), "proj_in.bias": (c,),
        "proj_out.weight": (c, c), "proj_out.bias": (c,),
    }
    block = "transformer_blocks.0."
    for j in range(2):
        attn = f"{block}attention_blocks.{j}."
        shapes.update({
            f"{attn}to_q.weight": (c, c), f"{attn}to_k.weight": (c, c), f"{attn}to_v.weight": (c, c),
            f"{attn}to_out.0.weight": (c, c), f"{attn}to_out.0.bias": (c,),
            f"{attn}pos_encoder.positional_encoding": (1, frames, c),
            f"{block}norms.{j}.weight": (c,), f"{block}norms.{j}.bias": (c,),
        })
    shapes.update({
        f"{block}ff.net.0.proj.weight": (8 * c, c), f"{block}ff.net.0.proj.bias": (8 * c,),
        f"{block}ff.net.2.weight": (c, 4 * c), f"{block}ff.net.2.bias": (c,),
        f"{block}ff_norm.weight": (c,), f"{block}ff_norm.bias": (c,),
    })
    return shapes


def hotshot_shapes(channels=SDXL_CHANNELS) -> dict[str, tuple[int, ...]]:
    """``hsxl_temporal_layers.safetensors``: two layers per down block, three per up block, no mid block."""
    out = {}
    for kind, blocks, per_block in (("down_blocks", channels, 2), ("up_blocks", tuple(reversed(channels)), 3)):
        for i, c in enumerate(blocks):
            for j in range(per_block):
                out.update({f"{kind}.{i}.temporal_attentions.{j}.{k}": s for k, s in layer_shapes(c).items()})
    return out


def hotshot_file(path, channels, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in hotshot_shapes(channels).items():
        if key.endswith("positional_encoding"):
            tensors[key] = hotshot_table(shape[1], shape[2])
        elif key.endswith(("norm.weight", "ff_norm.weight")) or ".norms." in key and key.endswith("weight"):
            tensors[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            tensors[key] = 0.2 * torch.randn(shape, generator=gen)
    save_file(tensors, str(path))
    return tensors


def hotshot_reference(w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Hotshot-XL's ``TransformerTemporal.forward`` on ``x`` ``[b, c, f, h, w]`` with weights ``w`` (one layer)."""
    b, c, f, h, wd = x.shape
    hidden = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, wd)
    skip = hidden
    hidden = F.group_norm(hidden, 32, w["norm.weight"], w["norm.bias"], eps=1e-6)
    hidden = hidden.permute(0, 2, 3, 1).reshape(b * f, h * wd, c)
    hidden = F.linear(hidden, w["proj_in.weight"], w["proj_in.bias"])
    blk = "transformer_blocks.0."
    s = h * wd
    for j in range(2):
        attn = f"{blk}attention_blocks.{j}."
        normed = F.layer_norm(hidden, (c,), w[f"{blk}norms.{j}.weight"], w[f"{blk}norms.{j}.bias"])
        tokens = normed.reshape(b, f, s, c).permute(0, 2, 1, 3).reshape(b * s, f, c)  # (b f) s c -> (b s) f c
        tokens = tokens + w[f"{attn}pos_encoder.positional_encoding"][:, :f]
        q, k, v = (F.linear(tokens, w[f"{attn}{n}.weight"]) for n in ("to_q", "to_k", "to_v"))
        d = c // HEADS
        q, k, v = (t.reshape(b * s, f, HEADS, d).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b * s, f, c)
        out = F.linear(out, w[f"{attn}to_out.0.weight"], w[f"{attn}to_out.0.bias"])
        out = out.reshape(b, s, f, c).permute(0, 2, 1, 3).reshape(b * f, s, c)  # (b s) f c -> (b f) s c
        hidden = out + hidden
    normed = F.layer_norm(hidden, (c,), w[f"{blk}ff_norm.weight"], w[f"{blk}ff_norm.bias"])
    projected = F.linear(normed, w[f"{blk}ff.net.0.proj.weight"], w[f"{blk}ff.net.0.proj.bias"])
    value, gate = projected.chunk(2, dim=-1)  # diffusers' GEGLU
    hidden = F.linear(value * F.gelu(gate), w[f"{blk}ff.net.2.weight"], w[f"{blk}ff.net.2.bias"]) + hidden
    hidden = F.linear(hidden, w["proj_out.weight"], w["proj_out.bias"])
    hidden = hidden.reshape(b * f, h, wd, c).permute(0, 3, 1, 2)
    return (hidden + skip).reshape(b, f, c, h, wd).permute(0, 2, 1, 3, 4)


def test_the_real_sdxl_key_set_and_shapes_convert_onto_an_adapter_completely():
    shapes = hotshot_shapes()
    assert len(shapes) == 15 * len(layer_shapes(320))  # 6 down + 9 up layers
    # Weights on the meta device (shapes only, no 1 GB file); the small position tables for real, as the loader checks them.
    meta = {
        k: hotshot_table(s[1], s[2]) if k.endswith("positional_encoding") else torch.empty(s, device="meta")
        for k, s in shapes.items()
    }
    converted = convert(Checkpoint(path="hsxl_temporal_layers.safetensors", container="safetensors", tensors=meta,
                                   metadata={}, extras={}, config=None))
    cfg = converted.config
    assert converted.format == "hotshot-xl"
    assert tuple(cfg["block_out_channels"]) == SDXL_CHANNELS and not cfg["use_mid_block"]
    assert (cfg["num_attention_heads"], cfg["norm_num_groups"], cfg["max_seq_length"], cfg["temporal_norm"]) == (
        8, 32, 24, "per_frame"
    )
    from motionkit import MotionAdapter

    with torch.device("meta"):
        adapter = MotionAdapter(**cfg)
    expected = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.state_dict.items()} == expected  # every key, every shape
    assert len(meta) - len(converted.state_dict) == 15 * 2  # only the position tables are dropped


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    # The same key set at channels GroupNorm(32) and 8 heads still split, so numerics run in seconds.
    path = tmp_path_factory.mktemp("hotshot") / "hsxl_temporal_layers.safetensors"
    return path, hotshot_file(path, channels=(32, 64, 64))


def test_loaded_modules_compute_what_hotshot_computes(small_file):
    path, tensors = small_file
    adapter = load_adapter(path)
    gen = torch.Generator().manual_seed(1)
    frames = 8
    for kind, blocks in (("down_blocks", adapter.down_blocks), ("up_blocks", adapter.up_blocks)):
        for i, block in enumerate(blocks):
            for j, module in enumerate(block.motion_modules):
                prefix = f"{kind}.{i}.temporal_attentions.{j}."
                weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                c = weights["norm.weight"].shape[0]
                x = torch.randn(2, c, frames, 3, 5, generator=gen)
                expected = hotshot_reference(weights, x)
                got = module(x.permute(0, 2, 1, 3, 4).reshape(2 * frames, c, 3, 5), frames)
                got = got.reshape(2, frames, c, 3, 5).permute(0, 2, 1, 3, 4)
                assert (got - expected).abs().max() < 1e-4, prefix


def test_inspect_names_hotshot_and_its_frame_limit(small_file, capsys):
    path, _ = small_file
    info = detect_format(path)
    assert (info.format, info.version, info.temporal_norm, info.max_frames) == ("hotshot-xl", None, "per_frame", 24)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hotshot-xl" in out and "up to 24" in out and "per frame" in out


def test_a_whole_hotshot_unet_keeps_its_temporal_layers(small_file, tmp_path):
    _, tensors = small_file
    whole = {**tensors, "down_blocks.0.resnets.0.conv1.weight": torch.randn(32, 32, 3, 3), "conv_in.weight": torch.randn(32, 4, 3, 3)}
    save_file(whole, str(tmp_path / "unet.safetensors"))
    info = detect_format(tmp_path / "unet.safetensors")
    assert info.format == "hotshot-xl" and any("skipped 2 tensors" in n for n in info.notes)
    loaded, direct = load_adapter(tmp_path / "unet.safetensors"), load_adapter(small_file[0])
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), direct.state_dict().values()))


def test_a_table_that_is_not_the_sinusoid_is_refused(small_file, tmp_path):
    _, tensors = small_file
    key = next(k for k in tensors if k.endswith("positional_encoding"))
    save_file({**tensors, key: tensors[key] + 0.5}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(FormatError, match="not the fixed sinusoid"):
        load_adapter(tmp_path / "odd.safetensors")

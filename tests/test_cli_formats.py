"""``motionkit convert`` and ``motionkit inspect``."""

from __future__ import annotations

import json

import torch

from motionkit import MotionAdapter, load_adapter, save_adapter
from motionkit.cli import main

TINY = dict(block_out_channels=(32, 64), norm_num_groups=8, num_attention_heads=4)


def tiny_adapter(**overrides) -> MotionAdapter:
    adapter = MotionAdapter(**{**TINY, **overrides})
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1 + 0.05)
    return adapter


def original_ckpt(path, table: int = 24) -> MotionAdapter:
    adapter = tiny_adapter()
    state = dict(adapter.state_dict())
    for key, value in list(state.items()):
        if key.endswith(".to_q.weight"):
            state[key.replace("to_q.weight", "pos_encoder.pe")] = torch.zeros(1, table, value.shape[0])
    torch.save({"state_dict": state}, path)
    return adapter


def test_convert_original_to_diffusers_with_overrides(tmp_path, capsys):
    adapter = original_ckpt(tmp_path / "mm_sd_v15.ckpt")
    code = main([
        "convert", str(tmp_path / "mm_sd_v15.ckpt"), str(tmp_path / "out"), "--to", "diffusers",
        "--heads", "4", "--norm-groups", "8", "--temporal-norm", "across_frames", "--dtype", "fp16",
    ])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "wrote" in captured.out and "float16" in captured.out
    loaded = load_adapter(tmp_path / "out")
    assert loaded.dtype == torch.float16
    assert (loaded.config.num_attention_heads, loaded.config.temporal_norm, loaded.config.max_seq_length) == (4, "across_frames", 24)
    for key, value in adapter.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.half()), key


def test_convert_per_frame_to_diffusers_prints_the_warning(tmp_path, capsys):
    save_adapter(tiny_adapter(), tmp_path / "mk.safetensors")
    assert main(["convert", str(tmp_path / "mk.safetensors"), str(tmp_path / "df"), "--to", "diffusers"]) == 0
    assert "warning: this adapter normalises per frame" in capsys.readouterr().out


def test_inspect_text_and_json(tmp_path, capsys):
    original_ckpt(tmp_path / "mm.ckpt")
    assert main(["inspect", str(tmp_path / "mm.ckpt")]) == 0
    out = capsys.readouterr().out
    for expected in ("animatediff (v1)", "blocks [32, 64]", "per frame", "up to 24", "float32", "parameters"):
        assert expected in out, (expected, out)
    assert main(["inspect", str(tmp_path / "mm.ckpt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["version"], info["max_frames"], info["dtype"]) == ("animatediff", "v1", 24, "float32")
    assert info["parameters"] == sum(p.numel() for p in tiny_adapter().parameters())


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    save_adapter(tiny_adapter(use_temporal_conv=True), tmp_path / "conv")
    cases = [
        (["inspect", str(tmp_path / "missing.ckpt")], "no such file"),
        (["inspect", str(tmp_path / "broken.safetensors")], "truncated or corrupt"),
        (["convert", str(tmp_path / "conv"), str(tmp_path / "x"), "--to", "diffusers"], "format='motionkit'"),
        (["convert", str(tmp_path / "conv"), str(tmp_path / "x.safetensors"), "--to", "animatediff"], "cannot hold"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("motionkit: error: ") and expected in err, err
        assert err.count("\n") == 1, err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.safetensors").exists()

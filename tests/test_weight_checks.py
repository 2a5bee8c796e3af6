"""Damaged adapters are refused in one line, by loading and by ``motionkit inspect`` alike: absurd config values
(which would hang building position tables), weights of a dtype motionkit cannot run, wrongly shaped tensors,
and NaN or infinite weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from motionkit import FormatError, MotionAdapter, MotionkitError, load_adapter, save_adapter
from motionkit.cli import main

TINY = dict(block_out_channels=(32, 64), norm_num_groups=8, num_attention_heads=4)
FF_KEY = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.ff.net.2.weight"


def _adapter() -> MotionAdapter:
    adapter = MotionAdapter(**TINY)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return adapter


def _single_file_with(tmp_path, key: str, change) -> str:
    """A motionkit single file whose tensor ``key`` is replaced by ``change(tensor)``."""
    path = tmp_path / "adapter.safetensors"
    save_adapter(_adapter(), path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    tensors[key] = change(tensors[key])
    save_file(tensors, str(path), metadata)
    return str(path)


def _inspect_error(path: str, capsys) -> str:
    code = main(["inspect", path])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("motionkit: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "fmt, field, value",
    [
        ("motionkit", "max_seq_length", 1e12),
        ("motionkit", "max_seq_length", 10**12),
        ("motionkit", "transformer_layers_per_block", 10**9),
        ("motionkit", "layers_per_block", -1),
        ("motionkit", "num_attention_heads", "eight"),
        ("diffusers", "motion_max_seq_length", 1e12),
    ],
)
def test_absurd_config_values_are_refused_up_front(tmp_path, capsys, fmt, field, value):
    folder = tmp_path / "adapter"
    save_adapter(_adapter(), folder, format=fmt)
    config = json.loads((folder / "config.json").read_text())
    config.pop("_motionkit_config", None)  # a diffusers-written folder has only diffusers' fields
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    line = _inspect_error(str(folder), capsys)
    assert field.removeprefix("motion_") in line and "fix the config" in line
    with pytest.raises(MotionkitError, match=field.removeprefix("motion_")):
        load_adapter(folder)


def test_absurd_values_are_refused_when_constructing_too():
    with pytest.raises(MotionkitError, match="max_seq_length is 1000000000000, outside 1-1024"):
        MotionAdapter(**TINY, max_seq_length=10**12)
    with pytest.raises(MotionkitError, match="dropout"):
        MotionAdapter(**TINY, dropout=float("nan"))


@pytest.mark.parametrize(
    "dtype, kind",
    [(torch.int32, "int32"), (torch.bool, "bool"), (torch.float8_e4m3fn, "float8_e4m3fn")],
)
def test_weights_of_a_dtype_motionkit_cannot_run_are_refused(tmp_path, capsys, dtype, kind):
    path = _single_file_with(tmp_path, FF_KEY, lambda t: t.to(dtype))
    line = _inspect_error(path, capsys)
    assert FF_KEY in line and kind in line
    with pytest.raises(FormatError, match=kind):
        load_adapter(path)


def test_wrongly_shaped_tensors_are_refused_by_inspect_as_by_loading(tmp_path, capsys):
    path = _single_file_with(tmp_path, FF_KEY, lambda t: t[:, :-1].contiguous())
    line = _inspect_error(path, capsys)
    assert "weights do not fit the adapter config" in line and "ff.net.2.weight" in line
    with pytest.raises(FormatError, match="weights do not fit"):
        load_adapter(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_naming_the_first_bad_tensor(tmp_path, capsys, bad):
    def poison(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t[0, 0] = bad
        return t

    path = _single_file_with(tmp_path, FF_KEY, poison)
    line = _inspect_error(path, capsys)
    assert FF_KEY in line and "NaN or infinite" in line
    with pytest.raises(FormatError, match="NaN or infinite"):
        load_adapter(path)


def test_healthy_files_still_inspect_and_load(tmp_path, capsys):
    path = tmp_path / "ok.safetensors"
    save_adapter(_adapter(), path)
    assert main(["inspect", str(path)]) == 0, capsys.readouterr().err
    assert load_adapter(path).config.max_seq_length == 32


def test_animate_refuses_the_tiny_familys_adapter_with_a_nan_weight(tmp_path, capsys):
    import shutil

    from motionkit.family import TinyFamily

    family = TinyFamily.find()
    poisoned = tmp_path / "tiny-motion"
    shutil.copytree(family.adapter, poisoned)
    weights = poisoned / "diffusion_pytorch_model.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    key = sorted(k for k in tensors if k.endswith("proj_out.weight"))[0]
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, str(weights), metadata)
    code = main([
        "animate", "--base", str(family.base), "--adapter", str(poisoned), "--prompt", "x", "--frames", "2",
        "--steps", "1", "--width", "64", "--height", "64", "--out", str(tmp_path / "o.mp4"),
    ])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and key in err[-1] and "NaN or infinite" in err[-1], err
    assert not (tmp_path / "o.mp4").exists()

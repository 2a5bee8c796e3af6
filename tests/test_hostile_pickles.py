"""Pickles built only from globals the weights-only unpickler allows, called with arguments they reject,
are "not a readable checkpoint" in one line, through every entry point that reads weights."""

from __future__ import annotations

import collections
import pickle

import pytest
import torch

from motionkit.cli import main
from motionkit.errors import FormatError
from motionkit.formats import detect_format, load_adapter
from motionkit.hostile import torch_zip_with_pickle


class _BadOrderedDict:
    def __reduce__(self):
        return (collections.OrderedDict, (5,))  # OrderedDict(5): TypeError inside the unpickler


class _BadSize:
    def __reduce__(self):
        return (torch.Size, ("abc",))  # torch.Size("abc"): TypeError inside the unpickler


@pytest.mark.parametrize("reducer", [_BadOrderedDict, _BadSize])
@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_allowed_globals_used_oddly_are_not_readable_checkpoints(tmp_path, capsys, reducer, container):
    path = tmp_path / "odd.ckpt"
    payload = {"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": reducer()}
    if container == "torch_zip":
        torch_zip_with_pickle(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    for call in (load_adapter, detect_format):
        with pytest.raises(FormatError, match="not a readable PyTorch checkpoint") as err:
            call(path)
        assert "\n" not in str(err.value)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a readable PyTorch checkpoint" in err

"""Pickles built only from globals the weights-only unpickler allows, called with arguments they reject,
are "not a readable checkpoint" in one line, through every entry point that reads weights."""

from __future__ import annotations

import collections
import io
import pickle
import zipfile

import pytest
import torch

from motionkit.cli import main
from motionkit.errors import FormatError
from motionkit.formats import detect_format, load_adapter


class _BadOrderedDict:
    def __reduce__(self):
        return (collections.OrderedDict, (5,))  # OrderedDict(5): TypeError inside the unpickler


class _BadSize:
    def __reduce__(self):
        return (torch.Size, ("abc",))  # torch.Size("abc"): TypeError inside the unpickler


def _torch_zip(payload: object, path) -> None:
    """A torch.save zip whose data.pkl is ``payload``'s pickle."""
    buffer = io.BytesIO()
    torch.save({"x": torch.zeros(1)}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w") as out:
        for info in source.infolist():
            data = source.read(info.filename)
            out.writestr(info, pickle.dumps(payload, protocol=2) if info.filename.endswith("data.pkl") else data)


@pytest.mark.parametrize("reducer", [_BadOrderedDict, _BadSize])
@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_allowed_globals_used_oddly_are_not_readable_checkpoints(tmp_path, capsys, reducer, container):
    path = tmp_path / "odd.ckpt"
    payload = {"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": reducer()}
    if container == "torch_zip":
        _torch_zip(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    for call in (load_adapter, detect_format):
        with pytest.raises(FormatError, match="not a readable PyTorch checkpoint") as err:
            call(path)
        assert "\n" not in str(err.value)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a readable PyTorch checkpoint" in err

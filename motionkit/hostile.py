"""Hostile inputs for motionkit's own tests and fault sweep: files that lie, pickles that misuse allowed
globals, and writers killed between two renames. Nothing here runs in normal use."""

from __future__ import annotations

import io
import pickle
import struct
import textwrap
import zipfile
import zlib
from pathlib import Path
from typing import Any


def kill_at_replace_prelude(kill_at: int) -> str:
    """Python source that makes the atomic writer's ``kill_at``-th ``os.replace`` (1-based) end the process
    with SIGKILL right after it: prepended to a child's code, the child dies exactly between two renames,
    as ``kill -9`` would leave it."""
    return textwrap.dedent(
        f"""
        import os, signal
        import motionkit.utils.atomic as atomic
        real, calls = os.replace, []
        def replace(src, dst):
            real(src, dst)
            calls.append(dst)
            if len(calls) == {int(kill_at)}:
                os.kill(os.getpid(), signal.SIGKILL)
        atomic.os.replace = replace
        """
    )


def png_claiming(path: str | Path, width: int, height: int) -> Path:
    """A 1x1 PNG whose header claims ``width`` x ``height`` (a decompression bomb's signature)."""
    from PIL import Image

    path = Path(path)
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # chunk type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def torch_zip_with_pickle(payload: Any, path: str | Path) -> Path:
    """A ``torch.save`` zip whose ``data.pkl`` is ``payload``'s pickle (e.g. allowed globals misused)."""
    import torch

    buffer = io.BytesIO()
    torch.save({"x": torch.zeros(1)}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w") as out:
        for info in source.infolist():
            data = source.read(info.filename)
            out.writestr(info, pickle.dumps(payload, protocol=2) if info.filename.endswith("data.pkl") else data)
    return Path(path)

"""Reading tensor files without running code from them.

safetensors files are read as they are. Pickle-based files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) go
through ``torch.load(weights_only=True)``, whose unpickler only rebuilds tensors and plain containers
and refuses every other global before calling it, so nothing in a hostile file executes.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from motionkit.errors import FormatError
from motionkit.utils.paths import missing_path_error

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def _safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FormatError(
            f"{path}: not a readable safetensors file ({detail}); it is truncated or corrupt: download or export it again"
        ) from None
    return tensors, metadata


def _pickle(path: Path, mmap: bool) -> Any:
    # mmap only works for the zip container torch.save writes; legacy pickles are read whole.
    use_mmap = mmap and zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line]
        if lines:
            # The weights-only unpickler stopped at a global it would have had to import and call.
            name = lines[0].split("GLOBAL", 1)[1].split()[0]
            raise FormatError(
                f"{path}: refused to load, the pickle references {name!r} (only tensors and plain containers are "
                "allowed, so nothing in it ran): get a .safetensors copy of these weights from a source you trust"
            ) from None
        raise FormatError(
            f"{path}: not a readable PyTorch checkpoint (corrupt, truncated, or using pickle features weights-only "
            "loading refuses): download it again or get a .safetensors copy"
        ) from None
    # TypeError and friends: allowed globals (OrderedDict, torch.Size, ...) called with arguments they reject.
    except (
        RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError, TypeError, AttributeError,
        IndexError, OverflowError, RecursionError,
    ) as err:
        if isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise FormatError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}); it is truncated or corrupt: "
            "download or export it again"
        ) from None


def read_tensor_file(path: str | Path, *, mmap: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """The top-level mapping stored in ``path`` and the safetensors metadata (empty for pickles).

    Pickle files may hold non-tensor entries (``epoch``, ``state_dict`` wrappers); callers unwrap them.
    """
    path = Path(path)
    if not path.exists():
        raise missing_path_error(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, expected a weights file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        obj = _pickle(path, mmap)
        if not isinstance(obj, dict):
            raise FormatError(
                f"{path}: holds a {type(obj).__name__}, not a dict of tensors: expected a motion-module state dict"
            )
        return obj, {}
    raise FormatError(
        f"{path}: unknown weights file type {suffix or '(no suffix)'!r}: use .safetensors, .ckpt, .pt, .pth or .bin"
    )


def _own_storage(t: torch.Tensor) -> torch.Tensor:
    t = t.contiguous()
    if t.untyped_storage().nbytes() != t.numel() * t.element_size():
        t = t.clone()
    return t


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` atomically (temporary file, then rename)."""
    from safetensors.torch import save_file

    from motionkit.utils.atomic import atomic_path

    # safetensors refuses shared or strided storage; contiguous copies are cheap next to the write itself.
    plain = {k: _own_storage(v.detach().to("cpu")) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(plain, str(tmp), metadata=metadata)

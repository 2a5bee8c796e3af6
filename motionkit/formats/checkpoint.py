"""Reading a checkpoint file or folder safely, and the description ``detect_format`` gives of one.

The layer every format reader sits on: nothing here knows a layout beyond telling LoRA keys apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from motionkit.errors import FormatError
from motionkit.formats.animatediff import unwrap
from motionkit.formats.diffusers_format import CONFIG_NAME
from motionkit.formats.safe_load import read_tensor_file
from motionkit.utils.paths import missing_path_error

_FOLDER_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


@dataclass
class FormatInfo:
    """What ``detect_format`` found: ``format`` is ``animatediff``, ``hotshot-xl``, ``diffusers``, ``motionkit``, ``pia``
    (a motion adapter with PIA's image branch), ``motion-lora``, ``controlnet`` or ``sparsectrl``."""

    path: str
    format: str
    container: str  # "folder", "safetensors" or "pickle"
    version: str | None
    layout: str | None
    dtype: str
    parameters: int
    tensors: int
    temporal_norm: str | None = None
    max_frames: int | None = None
    variant: str | None = None  # a few-step module (motionkit.formats.distilled): "animatelcm", "lightning-N"
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["config"] = json.loads(json.dumps(self.config, default=list))
        return out


@dataclass
class Checkpoint:
    path: Path
    container: str
    tensors: dict[str, Any]
    metadata: dict[str, str]
    extras: dict[str, Any]
    config: dict[str, Any] | None  # a folder's config.json


def _folder_weights(path: Path) -> Path:
    for name in _FOLDER_WEIGHTS:
        if (path / name).is_file():
            return path / name
    variants = sorted(path.glob("diffusion_pytorch_model*.safetensors")) + sorted(path.glob("diffusion_pytorch_model*.bin"))
    if len(variants) == 1:
        return variants[0]
    if variants:
        raise FormatError(f"{path}: several weight files ({', '.join(v.name for v in variants)}): keep one")
    raise FormatError(f"{path}: folder without diffusion_pytorch_model.safetensors or .bin: point at the adapter folder")


def read_checkpoint(path: str | Path, *, mmap: bool = False) -> Checkpoint:
    path = Path(path)
    if not path.exists():
        raise missing_path_error(path)
    if path.is_dir():
        config_path = path / CONFIG_NAME
        if not config_path.is_file():
            raise FormatError(
                f"{path}: folder without config.json: point at a motionkit or diffusers adapter, ControlNet or SparseCtrl folder"
            )
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise FormatError(f"{config_path}: not valid JSON ({err.msg if hasattr(err, 'msg') else err}): fix or re-export it") from None
        if not isinstance(config, dict):
            raise FormatError(f"{config_path}: expected a JSON object: fix or re-export it")
        weights = _folder_weights(path)
        obj, metadata = read_tensor_file(weights, mmap=mmap)
        tensors, extras = unwrap(obj)
        return Checkpoint(path, "folder", tensors, metadata, extras, config)
    obj, metadata = read_tensor_file(path, mmap=mmap)
    tensors, extras = unwrap(obj)
    container = "safetensors" if path.suffix.lower() == ".safetensors" else "pickle"
    return Checkpoint(path, container, tensors, metadata, extras, None)


def is_lora(keys: list[str]) -> bool:
    return any("_lora." in k or ".lora_A." in k or ".lora_B." in k or ".lora.down." in k or ".lora.up." in k for k in keys)



def main_dtype(tensors: dict[str, Any]) -> str:
    """The floating dtype holding most of the values (``unknown`` without any)."""
    counts: dict[torch.dtype, int] = {}
    for t in tensors.values():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel()
    if not counts:
        return "unknown"
    return str(max(counts, key=counts.get)).replace("torch.", "")

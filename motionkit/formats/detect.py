"""What a path holds: read it safely, recognise the layout, and convert it to motionkit's keys.

``detect_format`` answers without building an adapter; ``load_adapter`` builds on the same result.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from motionkit.errors import FormatError
from motionkit.formats.animatediff import from_original, is_original_layout, unwrap
from motionkit.formats.control_layout import control_kind
from motionkit.formats.diffusers_format import CONFIG_NAME, from_diffusers, is_diffusers_config, is_diffusers_layout
from motionkit.formats.layout import Converted
from motionkit.formats.motionkit_format import from_motionkit, is_motionkit_config, read_metadata_config
from motionkit.formats.safe_load import read_tensor_file

_FOLDER_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


@dataclass
class FormatInfo:
    """What ``detect_format`` found: ``format`` is ``animatediff``, ``diffusers``, ``motionkit``, ``pia`` (a motion
    adapter with PIA's image branch), ``motion-lora``, ``controlnet`` or ``sparsectrl``."""

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
        raise FileNotFoundError(f"{path}: no such file or folder")
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


def _summary(keys: list[str]) -> str:
    sample = ", ".join(repr(k) for k in keys[:3])
    return f"{len(keys)} tensors, e.g. {sample}" if keys else "no tensors"


def convert(ckpt: Checkpoint) -> Converted:
    """The checkpoint in motionkit's internal layout, with its full config."""
    keys = list(ckpt.tensors)
    where = ckpt.path
    if is_lora(keys):
        raise FormatError(f"{where}: this is a motion LoRA, not a motion adapter: use motionkit.apply_motion_lora")
    kind = control_kind(keys, ckpt.config)
    if kind is not None:
        from motionkit.formats.control import not_an_adapter_message

        raise FormatError(not_an_adapter_message(ckpt, kind))
    try:
        if ckpt.config is not None:
            if is_motionkit_config(ckpt.config):
                return from_motionkit(ckpt.tensors, ckpt.config)
            if is_diffusers_config(ckpt.config) or is_diffusers_layout(keys):
                return from_diffusers(ckpt.tensors, ckpt.config)
            raise FormatError(
                f"config.json is neither a motionkit nor a diffusers MotionAdapter config (keys: {', '.join(sorted(ckpt.config)[:5])})"
            )
        own = read_metadata_config(ckpt.metadata, where)
        if own is not None:
            return from_motionkit(ckpt.tensors, own)
        if is_diffusers_layout(keys):
            return from_diffusers(ckpt.tensors, None)
        if is_original_layout(keys):
            return from_original(ckpt.tensors, ckpt.extras, ckpt.metadata)
    except FormatError as err:
        message = str(err)
        raise FormatError(message if message.startswith(str(where)) else f"{where}: {message}") from None
    motion = [k for k in keys if ".motion_modules." in k]
    recognised = (
        f"motion-module keys in no known layout ({_summary(motion)})" if motion else f"no motion-module keys ({_summary(keys)})"
    )
    raise FormatError(
        f"{where}: {recognised}: expected an AnimateDiff motion module, a diffusers MotionAdapter or a motionkit adapter"
    )


def _dtype(tensors: dict[str, Any]) -> str:
    counts: dict[torch.dtype, int] = {}
    for t in tensors.values():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel()
    if not counts:
        return "unknown"
    return str(max(counts, key=counts.get)).replace("torch.", "")


def detect_format(path: str | Path) -> FormatInfo:
    """Recognise the file or folder at ``path`` without building an adapter (fully offline)."""
    from motionkit.formats.motion_lora import describe_lora

    ckpt = read_checkpoint(path, mmap=True)
    keys = list(ckpt.tensors)
    kind = control_kind(keys, ckpt.config)
    if kind is not None:
        from motionkit.formats.control import describe_control

        return describe_control(ckpt, kind)
    if is_lora(keys) and ckpt.config is None:
        return describe_lora(ckpt)
    converted = convert(ckpt)
    from motionkit.injection import Layout

    from motionkit.formats.distilled import distilled_variant, variant_note

    cfg = converted.config
    variant = distilled_variant(ckpt.path, converted.version, ckpt.metadata)
    notes = converted.notes + ([variant_note(variant)] if variant else [])
    n = len(cfg["block_out_channels"])
    layers = cfg["layers_per_block"]
    layout = Layout(
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=(layers,) * n if isinstance(layers, int) else tuple(layers),
        mid_block_layers=cfg["mid_block_layers"] if cfg["use_mid_block"] else 0,
    )
    return FormatInfo(
        path=str(ckpt.path),
        format=converted.format,
        container=ckpt.container,
        version=converted.version,
        layout=str(layout),
        dtype=_dtype(ckpt.tensors),
        parameters=sum(t.numel() for t in converted.state_dict.values()),
        tensors=len(ckpt.tensors),
        temporal_norm=cfg.get("temporal_norm"),
        max_frames=cfg.get("max_seq_length") if cfg.get("use_temporal_attention", True) else None,
        variant=variant,
        config=cfg,
        notes=notes,
    )

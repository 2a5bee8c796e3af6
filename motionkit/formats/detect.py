"""What a path holds: recognise the layout of a read checkpoint and convert it to motionkit's keys.

``detect_format`` answers without building an adapter; ``load_adapter`` builds on the same result.
"""

from __future__ import annotations

from pathlib import Path

from motionkit.errors import FormatError
from motionkit.formats.animatediff import from_original, is_original_layout
from motionkit.formats.build import build_adapter
from motionkit.formats.checkpoint import Checkpoint, FormatInfo, is_lora, main_dtype, read_checkpoint
from motionkit.formats.control import describe_control, not_an_adapter_message
from motionkit.formats.control_layout import control_kind
from motionkit.formats.distilled import distilled_variant, variant_note
from motionkit.formats.diffusers_format import from_diffusers, is_diffusers_config, is_diffusers_layout
from motionkit.formats.hotshot import from_hotshot, is_hotshot_layout
from motionkit.formats.layout import Converted
from motionkit.formats.motion_lora import describe_lora
from motionkit.formats.motionkit_format import from_motionkit, is_motionkit_config, read_metadata_config
from motionkit.unet_layout import Layout

__all__ = ["Checkpoint", "FormatInfo", "convert", "detect_format", "read_checkpoint"]


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
        raise FormatError(not_an_adapter_message(ckpt, kind))
    try:
        if is_hotshot_layout(keys):
            return from_hotshot(ckpt.tensors)
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
        f"{where}: {recognised}: expected an AnimateDiff motion module, Hotshot-XL temporal layers, a diffusers MotionAdapter or a motionkit adapter"
    )


def detect_format(path: str | Path) -> FormatInfo:
    """Recognise the file or folder at ``path`` without building an adapter (fully offline)."""
    ckpt = read_checkpoint(path, mmap=True)
    keys = list(ckpt.tensors)
    kind = control_kind(keys, ckpt.config)
    if kind is not None:
        return describe_control(ckpt, kind)
    if is_lora(keys) and ckpt.config is None:
        return describe_lora(ckpt)
    converted = convert(ckpt)
    # Build it as loading does (tensors assigned, not copied): whatever load_adapter refuses, inspect refuses.
    build_adapter(converted.config, converted.state_dict, str(ckpt.path))
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
        dtype=main_dtype(ckpt.tensors),
        parameters=sum(t.numel() for t in converted.state_dict.values()),
        tensors=len(ckpt.tensors),
        temporal_norm=cfg.get("temporal_norm"),
        max_frames=cfg.get("max_seq_length") if cfg.get("use_temporal_attention", True) else None,
        variant=variant,
        config=cfg,
        notes=notes,
    )

"""``load_adapter`` and ``save_adapter``: every supported adapter format in and out, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from motionkit.errors import FormatError, MotionkitError
from motionkit.formats.build import build_adapter
from motionkit.formats.checkpoint import read_checkpoint
from motionkit.formats.detect import convert
from motionkit.formats.motionkit_format import adapter_fields

SAVE_FORMATS = ("motionkit", "diffusers", "animatediff")


def load_adapter(path: str | Path, *, torch_dtype: torch.dtype | None = None, **overrides: Any) -> Any:
    """Load a motion adapter from any supported file or folder, without touching the network.

    Reads original AnimateDiff modules (``.ckpt``/``.safetensors``, v1/v2/v3/SDXL-beta), diffusers
    ``MotionAdapter`` folders and bare files (PIA included) and motionkit folders and single files.
    ``overrides`` set any ``MotionAdapter`` config field, e.g. ``temporal_norm="across_frames"`` or
    ``num_attention_heads=8`` (heads cannot be read from weights). Weights keep the file's dtype unless
    ``torch_dtype`` is given.
    """
    fields = adapter_fields()
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise MotionkitError(f"unknown adapter option {unknown[0]!r}: choose from {', '.join(sorted(fields))}")
    ckpt = read_checkpoint(path)
    converted = convert(ckpt)
    config = {**converted.config, **overrides}
    adapter = build_adapter(config, converted.state_dict, str(ckpt.path))
    if torch_dtype is not None:
        adapter.to(torch_dtype)
    return adapter


def save_adapter(adapter: Any, path: str | Path, format: str = "motionkit") -> Path:
    """Write ``adapter`` atomically as ``motionkit`` (a folder, or one ``.safetensors`` by suffix),
    ``diffusers`` (a ``MotionAdapter`` folder) or ``animatediff`` (one original-layout ``.safetensors``)."""
    from motionkit.adapter import MotionAdapter
    from motionkit.formats.animatediff import save_animatediff
    from motionkit.formats.diffusers_format import save_diffusers
    from motionkit.formats.motionkit_format import save_motionkit

    if not isinstance(adapter, MotionAdapter):
        raise MotionkitError(f"expected a motionkit MotionAdapter, got {type(adapter).__name__}")
    if getattr(adapter, "peft_config", None):
        names = ", ".join(adapter.peft_config)
        raise FormatError(
            f"the adapter has motion LoRAs applied ({names}): save them with save_motion_lora and "
            "call remove_motion_lora before saving the adapter"
        )
    writers = {"motionkit": save_motionkit, "diffusers": save_diffusers, "animatediff": save_animatediff}
    if format not in writers:
        raise MotionkitError(f"unknown adapter format {format!r}: choose one of {', '.join(SAVE_FORMATS)}")
    path = Path(path)
    writers[format](adapter, path)
    return path

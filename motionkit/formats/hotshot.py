"""Hotshot-XL's temporal layers (``hsxl_temporal_layers.safetensors``, and the temporal part of its UNet).

Hotshot-XL's ``TransformerTemporal`` is AnimateDiff's temporal transformer under other names: per-frame
GroupNorm (32 groups, eps 1e-6) -> ``proj_in`` -> one block of two self-attentions over frames (LayerNorm,
+ a fixed 24-frame sinusoid, 8 heads, ``to_q/k/v`` without bias) and a GEGLU feed-forward -> ``proj_out`` ->
residual, placed where AnimateDiff places its modules (two per down block, three per up block, no mid
block). So conversion renames ``X_blocks.i.temporal_attentions.j.`` to
``X_blocks.i.motion_modules.j.temporal_transformer.`` and drops the ``pos_encoder.positional_encoding``
tables, which motionkit rebuilds from the same sinusoid (checked here, since it is rebuilt, not read).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from motionkit.errors import FormatError
from motionkit.formats.layout import Converted, complete_config, infer_layout
from motionkit.modules.position import sinusoidal_table

FORMAT_TAG = "hotshot-xl"
TABLE_LENGTH = 24  # Hotshot-XL's PositionalEncoding default, which its temporal attentions use
_KEY = re.compile(r"^(?P<block>(?:down|up)_blocks\.\d+)\.temporal_attentions\.(?P<index>\d+)\.(?P<rest>.+)$")
_TABLE = ".pos_encoder.positional_encoding"
# bf16 holds the sinusoid to about 4e-3.
_TABLE_TOLERANCE = 1e-2


def is_hotshot_layout(keys: list[str]) -> bool:
    return any(_KEY.match(k) for k in keys)


def from_hotshot(tensors: dict[str, Any]) -> Converted:
    notes: list[str] = []
    state: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    skipped = 0
    for key, value in tensors.items():
        m = _KEY.match(key)
        if m is None:
            # A whole Hotshot-XL UNet: its temporal layers are the adapter, the rest is the SDXL image model.
            skipped += 1
            continue
        name = f"{m['block']}.motion_modules.{m['index']}.temporal_transformer.{m['rest']}"
        (tables if name.endswith(_TABLE) else state)[name] = value
    if skipped:
        notes.append(f"kept the temporal layers, skipped {skipped} tensors outside them (the image UNet)")
    lengths = {tuple(v.shape)[1] for v in tables.values() if v.ndim == 3}
    if len(lengths) > 1:
        raise FormatError(f"pos_encoder.positional_encoding tables disagree on length ({sorted(lengths)}); the file is inconsistent")
    length = lengths.pop() if lengths else TABLE_LENGTH
    for key, table in tables.items():
        if table.ndim != 3 or table.shape[0] != 1:
            raise FormatError(f"{key} has shape {tuple(table.shape)}, not [1, frames, channels]: the file is damaged")
        expected = sinusoidal_table(table.shape[1], table.shape[2])
        if not torch.allclose(table[0].float(), expected, atol=_TABLE_TOLERANCE):
            raise FormatError(
                f"{key} is not the fixed sinusoid Hotshot-XL computes, and motionkit would rebuild it: "
                "the file is damaged or not a Hotshot-XL release"
            )
    inferred = infer_layout(state)
    # Weights cannot tell heads or groups: Hotshot-XL uses 8 heads and 32 groups, complete_config's defaults.
    config = complete_config(inferred, {}, {"max_seq_length": length, "temporal_norm": "per_frame"})
    return Converted(state, config, FORMAT_TAG, None, notes)

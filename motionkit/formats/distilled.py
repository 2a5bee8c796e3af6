"""Recognise few-step (distilled) motion modules: AnimateLCM and AnimateDiff-Lightning.

Distillation changes weights, not structure, so what a file is made for is read from the little it tells:

- **AnimateLCM** (``AnimateLCM_sd15_t2v.ckpt``): the AnimateDiff v2 layout with its frame-position table named
  ``pos_encoder.pos_encoding`` (AnimateLCM's code; AnimateDiff's is ``pos_encoder.pe``) and 64 frames long (no
  AnimateDiff release has 64), or a file name containing ``animatelcm``;
- **AnimateDiff-Lightning** (``animatediff_lightning_{1,2,4,8}step_diffusers.safetensors`` and the
  ``_comfyui`` variants): byte for byte the layout of AnimateDiff v2 (diffusers or original keys, a 32-frame
  table), so only the file name (``lightning`` and ``Nstep``) or a ``lightning`` / ``steps`` entry in the
  safetensors metadata tells. A renamed Lightning file reads as plain v2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

_LIGHTNING = re.compile(r"lightning[^0-9]*?(?P<steps>[1248])[-_ ]?steps?", re.IGNORECASE)


def distilled_variant(path: str | Path, version: str | None, metadata: Mapping[str, str]) -> str | None:
    """``"animatelcm"``, ``"lightning-N"`` or ``None``, with the preset of the same name to sample it."""
    name = Path(path).name
    if version == "animatelcm" or "animatelcm" in name.lower():
        return "animatelcm"
    text = " ".join([name, *(f"{k} {v}" for k, v in metadata.items() if isinstance(v, str) and len(v) < 200)])
    match = _LIGHTNING.search(text)
    return f"lightning-{match['steps']}" if match else None


def variant_note(variant: str) -> str:
    what = "AnimateLCM" if variant == "animatelcm" else f"AnimateDiff-Lightning, {variant.split('-')[1]}-step"
    return f"{what}: sample it with --preset {variant} (preset={variant!r} in Python)"

"""motionkit: teach image diffusion models to move.

Public names load on first use, so ``import motionkit`` (and every CLI start or worker process)
stays fast; torch and diffusers are imported only when a model object is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "MotionAdapter": "motionkit.adapter",
    "MotionUNet": "motionkit.injection",
    "inject": "motionkit.injection",
    "MotionPipeline": "motionkit.pipeline",  # loads MotionPipelineXL too, which SDXL bases get
    "load_adapter": "motionkit.formats",
    "save_adapter": "motionkit.formats",
    "load_control_model": "motionkit.formats",
    "load_motion_lora": "motionkit.formats",
    "apply_motion_lora": "motionkit.formats",
    "remove_motion_lora": "motionkit.formats",
    "save_motion_lora": "motionkit.formats",
    "detect_format": "motionkit.formats",
    "MotionkitError": "motionkit.errors",
    "FormatError": "motionkit.errors",
    "LayoutMismatchError": "motionkit.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'motionkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value

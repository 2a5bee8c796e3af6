"""Reading and writing motion adapters and motion LoRAs in every supported format, offline.

- ``load_adapter`` / ``save_adapter``: original AnimateDiff, diffusers ``MotionAdapter`` (PIA included)
  and motionkit's own folders and single files.
- ``detect_format``: what a path holds (format, version, layout, dtype, sizes) without building anything.
- ``load_motion_lora`` / ``apply_motion_lora`` / ``remove_motion_lora`` / ``save_motion_lora``.
- ``load_control_model``: a ControlNet or SparseCtrl model for the pipeline's ``controlnet``.
"""

from motionkit.formats.adapter_io import load_adapter, save_adapter
from motionkit.formats.control_folder import load_control_model
from motionkit.formats.detect import FormatInfo, detect_format
from motionkit.formats.motion_lora import (
    MotionLoRA,
    apply_motion_lora,
    load_motion_lora,
    remove_motion_lora,
    save_motion_lora,
    set_motion_lora_scale,
)

__all__ = [
    "FormatInfo",
    "MotionLoRA",
    "apply_motion_lora",
    "detect_format",
    "load_adapter",
    "load_control_model",
    "load_motion_lora",
    "remove_motion_lora",
    "save_adapter",
    "save_motion_lora",
    "set_motion_lora_scale",
]

"""Adapter presets: the released AnimateDiff layouts and numerics, and motionkit's own.

Each preset is a dict of ``MotionAdapter`` config fields; ``MotionAdapter.from_preset`` merges overrides.
"""

from __future__ import annotations

from typing import Any

_SD15 = {"block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2, "num_attention_heads": 8}
_SDXL = {"block_out_channels": (320, 640, 1280), "layers_per_block": 2, "num_attention_heads": 8}

PRESETS: dict[str, dict[str, Any]] = {
    # mm_sd_v14 / mm_sd_v15: table of 24, no mid-block module, per-frame GroupNorm.
    "animatediff-v1": {**_SD15, "use_mid_block": False, "max_seq_length": 24, "temporal_norm": "per_frame"},
    # mm_sd_v15_v2: adds the mid-block module, table of 32.
    "animatediff-v2": {**_SD15, "use_mid_block": True, "max_seq_length": 32, "temporal_norm": "per_frame"},
    # v3_sd15_mm: v2 without the mid block.
    "animatediff-v3": {**_SD15, "use_mid_block": False, "max_seq_length": 32, "temporal_norm": "per_frame"},
    # mm_sdxl_v10_beta: three blocks, GroupNorm across frames.
    "animatediff-sdxl-beta": {**_SDXL, "use_mid_block": False, "max_seq_length": 32, "temporal_norm": "across_frames"},
    # motionkit's own: temporal attention plus SVD-style temporal convolutions.
    "motionkit-sd15": {
        **_SD15,
        "use_mid_block": True,
        "max_seq_length": 32,
        "temporal_norm": "per_frame",
        "use_temporal_conv": True,
        "temporal_conv_kernel_size": 3,
    },
    "motionkit-sdxl": {
        **_SDXL,
        "use_mid_block": False,
        "max_seq_length": 32,
        "temporal_norm": "across_frames",
        "use_temporal_conv": True,
        "temporal_conv_kernel_size": 3,
    },
}


def preset_config(name: str) -> dict[str, Any]:
    from motionkit.errors import MotionkitError

    if name not in PRESETS:
        raise MotionkitError(f"unknown adapter preset {name!r}: choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])

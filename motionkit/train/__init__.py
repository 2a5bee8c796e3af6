"""Training motion adapters and MotionLoRAs (accelerate loop, checkpoints, EMA, image conditioning).

``TrainConfig`` and ``Trainer`` load on first use, so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "motionkit.train.config",
    "Trainer": "motionkit.train.trainer",
    "TrainResult": "motionkit.train.trainer",
    "TrainingDivergedError": "motionkit.train.trainer",
    "FrozenWeightsChangedError": "motionkit.train.trainer",
    "train": "motionkit.train.trainer",
    "image_cond_tensor": "motionkit.train.image_cond",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'motionkit.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value

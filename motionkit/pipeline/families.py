"""Base-model families and the pipeline class that samples each.

A pipeline class registers for its family when it is defined (``MotionPipeline`` for ``sd``,
``MotionPipelineXL`` for ``sdxl``), so ``MotionPipeline`` hands an SDXL base to its subclass without
importing it: the subclass module depends on the base module, never the other way round.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from motionkit.errors import MotionkitError

PIPELINE_NAMES = {"sd": "MotionPipeline", "sdxl": "MotionPipelineXL"}
# Where each family's pipeline is defined: loaded by name on first use, as plugins are, so asking the base
# class for an SDXL pipeline works however the caller imported it.
PIPELINE_MODULES = {"sd": "motionkit.pipeline.motion_pipeline", "sdxl": "motionkit.pipeline.motion_pipeline_xl"}
_PIPELINES: dict[str, type] = {}


def pipeline_family(unet: Any) -> str:
    """``"sdxl"`` for UNets with SDXL's added text/time conditioning, else ``"sd"`` (SD 1.x / 2.x)."""
    unet = getattr(unet, "unet", unet)  # an injected UNet is wrapped in MotionUNet
    return "sdxl" if getattr(unet.config, "addition_embed_type", None) == "text_time" else "sd"


def folder_family(path: str | Path) -> str | None:
    """The family of a local diffusers pipeline folder from its UNet config; ``None`` when it cannot be read."""
    try:
        config = json.loads((Path(path) / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return "sdxl" if config.get("addition_embed_type") == "text_time" else "sd"


def register_pipeline(cls: type) -> None:
    """Make ``cls`` the pipeline of ``cls.family`` unless that family already has one."""
    _PIPELINES.setdefault(cls.family, cls)


def pipeline_class(family: str) -> type:
    """The registered pipeline class of ``family``."""
    if family not in _PIPELINES and family in PIPELINE_MODULES:
        import importlib

        importlib.import_module(PIPELINE_MODULES[family])  # defining the class registers it
    if family not in _PIPELINES:
        name = PIPELINE_NAMES.get(family, "its pipeline")
        raise MotionkitError(
            f"an {family.upper()} base needs {name}, which is not loaded: import it from motionkit.pipeline "
            "(motionkit.MotionPipeline and motionkit.pipeline.MotionPipeline load it)"
        )
    return _PIPELINES[family]

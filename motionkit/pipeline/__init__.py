"""Sampling: text-to-video and image-to-video pipelines, context windows, FreeInit, base loading.

``MotionPipeline`` and ``MotionPipelineXL`` load on first use so that importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any


def _resolve_image_processors_quietly() -> None:
    """diffusers' SD pipelines name ``CLIPImageProcessor``; without torchvision (absent on CPU-only installs)
    transformers falls back to the PIL class and warns on every start. Resolve it once, silently."""
    import transformers

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        for name in ("CLIPImageProcessor", "SiglipImageProcessor"):
            getattr(transformers, name, None)
    finally:
        transformers.logging.set_verbosity(level)


_resolve_image_processors_quietly()


def __getattr__(name: str) -> Any:
    if name in ("MotionPipeline", "MotionPipelineOutput"):
        from motionkit.pipeline import motion_pipeline, motion_pipeline_xl  # noqa: F401  (registers the SDXL family)

        return getattr(motion_pipeline, name)
    if name == "MotionPipelineXL":
        from motionkit.pipeline.motion_pipeline_xl import MotionPipelineXL

        return MotionPipelineXL
    raise AttributeError(f"module 'motionkit.pipeline' has no attribute {name!r}")

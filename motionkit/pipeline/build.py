"""Building a ready-to-sample pipeline from loaded parts: the device and dtype, quiet loading, assembly.

Shared by ``motionkit animate``, ``motionkit demo`` and the app, so each loads and assembles models the same way.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from motionkit.errors import MotionkitError

DTYPES = ("fp32", "fp16", "bf16")


def device_and_dtype(device: str | None = None, dtype: str | None = None) -> tuple[str, Any]:
    """The device and torch dtype to load models on: cuda when available, fp16 on cuda and fp32 on cpu."""
    import torch

    from motionkit.pipeline.memory import check_device

    device = check_device(device)
    name = dtype or ("fp16" if device == "cuda" else "fp32")
    if name not in DTYPES:
        raise MotionkitError(f"unknown dtype {name!r}: choose one of {', '.join(DTYPES)}")
    if name == "fp16" and device == "cpu":
        raise MotionkitError("--dtype fp16 needs --device cuda: on CPU use fp32 or bf16")
    return device, {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence transformers' per-file progress bars and config notes while loading, so that a refusal
    (say, an adapter of another family) is the one line on stderr."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def assemble_pipeline(
    components: dict[str, Any], adapter: Any, scheduler: str = "ddim", attention_backend: str = "auto", controlnet: Any = None
) -> Any:
    """A ``MotionPipeline`` (``MotionPipelineXL`` for SDXL bases) from loaded base components and an adapter that
    fits them (injected into their UNet), optionally with a control model."""
    from motionkit.errors import BackendUnavailableError
    from motionkit.pipeline import MotionPipeline
    from motionkit.pipeline.families import pipeline_family
    from motionkit.pipeline.schedulers import make_scheduler

    family = pipeline_family(components["unet"])
    chosen = make_scheduler(scheduler, components["scheduler"].config, family=family)
    pipe = MotionPipeline.from_components({**components, "scheduler": chosen}, adapter, controlnet=controlnet)
    try:
        adapter.set_attention_backend(attention_backend)
    except BackendUnavailableError as err:
        raise MotionkitError(str(err)) from None
    return pipe

"""Memory options of a pipeline: diffusers' CPU offload, VAE slicing and tiling, and the accelerator check.

- ``offload="model"``: ``enable_model_cpu_offload`` — each component moves to the accelerator when it runs
  and back when the next one does (``model_cpu_offload_seq``: text encoders, image encoder, UNet, VAE);
  the motion adapter, which only runs inside the UNet's forward, stays on the accelerator.
- ``offload="sequential"``: ``enable_sequential_cpu_offload`` — every leaf module's weights move in just
  before it runs: the least accelerator memory, much slower.
- ``vae_slicing``: the VAE decodes one frame of a chunk at a time; ``vae_tiling``: in overlapping
  tiles, for sizes whose activations do not fit. ``decode_chunk_size`` (a call argument) bounds how many
  frames the VAE sees at once in the first place.

Offload needs ``accelerate`` and an accelerator (CUDA, or MPS where torch has it): on the CPU every model
already lives in main memory, so asking for it there is refused rather than silently ignored.
"""

from __future__ import annotations

from typing import Any

import torch

from motionkit.errors import MotionkitError

OFFLOAD_MODES = ("model", "sequential")
DEVICES = ("cpu", "cuda", "mps")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | None) -> str:
    """``device`` (default: cuda when available, else cpu), refused in one line when this machine lacks it."""
    device = device or default_device()
    kind = torch.device(device).type
    if kind not in DEVICES:
        raise MotionkitError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise MotionkitError("--device cuda was asked for but no CUDA GPU is available: use --device cpu")
    if kind == "mps" and not mps_available():
        built = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_built()
        why = "this machine has no Metal GPU" if built else "this torch build has no MPS backend (Apple silicon only)"
        raise MotionkitError(f"--device mps was asked for but {why}: use --device cpu")
    return device


def check_offload(offload: str | None, device: str | None) -> None:
    """Refuse an offload mode that cannot act: unknown, without accelerate, or with no accelerator to offload to."""
    if offload is None:
        return
    if offload not in OFFLOAD_MODES:
        raise MotionkitError(f"unknown offload mode {offload!r}: choose one of {', '.join(OFFLOAD_MODES)}")
    from diffusers.utils import is_accelerate_available

    if not is_accelerate_available():
        raise MotionkitError("--offload needs the accelerate package: pip install accelerate")
    if torch.device(device or default_device()).type == "cpu":
        raise MotionkitError(
            f"--offload {offload} moves models between main memory and an accelerator, and this run is on the CPU "
            "(no CUDA GPU here, or --device cpu), where every model already sits in main memory: drop --offload, "
            "or run with --device cuda on a GPU machine"
        )


def enable_offload(pipe: Any, offload: str, device: str | torch.device) -> None:
    """diffusers' ``enable_model_cpu_offload`` / ``enable_sequential_cpu_offload`` onto ``device``, unchecked
    (``apply_memory_options`` checks; this also takes ``"cpu"``, where the hooks run without moving anything)."""
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        raise MotionkitError(f"unknown offload mode {offload!r}: choose one of {', '.join(OFFLOAD_MODES)}")


def apply_memory_options(
    pipe: Any,
    offload: str | None = None,
    device: str | None = None,
    vae_slicing: bool = False,
    vae_tiling: bool = False,
) -> None:
    """Switch a pipeline's memory options on (each a diffusers switch; see the module docstring)."""
    if offload is not None:
        check_offload(offload, device)
        enable_offload(pipe, offload, check_device(device))
    if vae_slicing:
        pipe.vae.enable_slicing()
    if vae_tiling:
        pipe.vae.enable_tiling()

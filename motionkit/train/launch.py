"""What ``accelerate launch`` was asked for against what accelerate set up: refuse a run that would
silently be something else (FSDP on CPU, several CPU processes through ``--cpu``, fewer processes than
the launcher started)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from motionkit.errors import MotionkitError

CPU_DDP_HINT = "for several CPU processes use 'accelerate launch --multi_gpu --num_processes N' with cpu=true (DDP over gloo)"


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in ("1", "true", "yes")


def check_launch(accelerator: Any, environ: Mapping[str, str] | None = None) -> None:
    """Raise ``MotionkitError`` (one line) where the launcher's environment asked for a layout that
    ``accelerator`` (an ``accelerate.Accelerator``) does not run."""
    from accelerate.utils import DistributedType

    env = os.environ if environ is None else environ
    kind = accelerator.distributed_type
    running = f"accelerate set up {kind.value} with {accelerator.num_processes} process(es) on {accelerator.device.type}"
    if _flag(env, "ACCELERATE_USE_FSDP") and (accelerator.device.type == "cpu" or kind != DistributedType.FSDP):
        raise MotionkitError(
            f"FSDP was asked for but {running}: FSDP needs GPUs; run on GPUs, or {CPU_DDP_HINT}"
        )
    asked = env.get("WORLD_SIZE")
    if asked is not None and asked.isdigit() and int(asked) != accelerator.num_processes:
        raise MotionkitError(f"the launcher started {asked} processes but {running}: check the accelerate config")
    if asked is None and _flag(env, "ACCELERATE_USE_CPU") and "MASTER_ADDR" in env and accelerator.num_processes == 1:
        # accelerate launch --cpu --num_processes N (N > 1) sets MASTER_ADDR yet starts one process (its
        # multi-CPU mode needs MPI).
        raise MotionkitError(
            f"several processes were asked for with --cpu but {running}: accelerate's --cpu runs one process; {CPU_DDP_HINT}"
        )

"""What ``accelerate launch`` was asked for against what accelerate set up: refuse a run that would
silently be something else (accelerate's FSDP or DeepSpeed on CPU, several CPU processes through ``--cpu``,
fewer processes than the launcher started), and a ``distributed.strategy`` the launch cannot run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from motionkit.errors import MotionkitError

CPU_DDP_HINT = "for several CPU processes use 'accelerate launch --multi_gpu --num_processes N' with cpu=true (DDP over gloo)"
FSDP2_HINT = (
    "set distributed.strategy=fsdp2 in the training config and launch with 'accelerate launch --multi_gpu "
    "--num_processes N' (cpu=true on CPU): motionkit shards with torch's fully_shard itself"
)
ZERO_HINT = (
    "set distributed.strategy=zero2 or zero3 in the training config instead (motionkit builds accelerate's "
    "DeepSpeed plugin itself, so checkpoints hold DeepSpeed's state and resume)"
)


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in ("1", "true", "yes")


def check_launch(accelerator: Any, environ: Mapping[str, str] | None = None) -> None:
    """Raise ``MotionkitError`` (one line) where the launcher's environment asked for a layout that
    ``accelerator`` (an ``accelerate.Accelerator``) does not run."""
    env = os.environ if environ is None else environ
    kind = accelerator.distributed_type
    running = f"accelerate set up {kind.value} with {accelerator.num_processes} process(es) on {accelerator.device.type}"
    asked = env.get("WORLD_SIZE")
    if asked is not None and asked.isdigit() and int(asked) != accelerator.num_processes:
        raise MotionkitError(f"the launcher started {asked} processes but {running}: check the accelerate config")
    if asked is None and _flag(env, "ACCELERATE_USE_CPU") and "MASTER_ADDR" in env and accelerator.num_processes == 1:
        # accelerate launch --cpu --num_processes N (N > 1) sets MASTER_ADDR yet starts one process (its
        # multi-CPU mode needs MPI).
        raise MotionkitError(
            f"several processes were asked for with --cpu but {running}: accelerate's --cpu runs one process; {CPU_DDP_HINT}"
        )


def check_engine(strategy: str, environ: Mapping[str, str] | None = None, *, cpu: bool = False) -> None:
    """Before accelerate starts: raise ``MotionkitError`` (one line) for an engine that cannot run here,
    asked for by ``distributed.strategy`` or by the launcher's environment (an accelerate config file)."""
    from motionkit.train.zero import check_zero_available, is_zero

    env = os.environ if environ is None else environ
    if is_zero(strategy):
        check_zero_available(strategy, cpu, env)
    elif _flag(env, "ACCELERATE_USE_DEEPSPEED"):
        raise MotionkitError(f"accelerate's DeepSpeed was asked for (an accelerate config or --use_deepspeed): {ZERO_HINT}")
    if _flag(env, "ACCELERATE_USE_FSDP"):
        # accelerate 1.x ignores its FSDP plugin on CPU (it prepares DDP, silently); on GPUs its size-based
        # wrapping would leave the checkpoints holding one process's shard.
        raise MotionkitError(f"accelerate's FSDP was asked for (an accelerate config or --use_fsdp): {FSDP2_HINT}")


def check_strategy(strategy: str, accelerator: Any) -> None:
    """Raise ``MotionkitError`` (one line) where ``distributed.strategy`` cannot run as launched."""
    import torch.distributed as dist

    # A launcher's single process has a process group (fsdp2 then runs, sharding nothing); a plain one has none.
    if strategy == "fsdp2" and not (dist.is_available() and dist.is_initialized()):
        raise MotionkitError(
            f"distributed.strategy fsdp2 needs processes started by a launcher ({accelerator.num_processes} plain "
            "process here): use 'accelerate launch --multi_gpu --num_processes N' (cpu=true on CPU), or distributed.strategy ddp"
        )
    if strategy in ("zero2", "zero3") and accelerator.distributed_type.value != "DEEPSPEED":
        raise MotionkitError(
            f"distributed.strategy {strategy} asked for DeepSpeed but accelerate set up {accelerator.distributed_type.value}: "
            "launch with 'accelerate launch --multi_gpu --num_processes N' on CUDA GPUs, or use distributed.strategy fsdp2"
        )

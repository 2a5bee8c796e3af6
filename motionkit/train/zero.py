"""DeepSpeed ZeRO-2/3 for motion training (``distributed.strategy zero2|zero3``), through accelerate's
DeepSpeed plugin, on CUDA GPUs only.

ZeRO-2 partitions the adapter's gradients and AdamW's state across the processes (every process keeps
whole weights); ZeRO-3 partitions the weights too, the frozen UNet's included (DeepSpeed's engine wraps
the whole injected UNet; only the adapter's parameters are in the optimizer, so only they train).
accelerate 1.x turns its DeepSpeed plugin off when ``cpu=True``, so these strategies are refused on CPU:
``fsdp2`` shards the same state and runs there.

Checkpoints keep motionkit's layout (``checkpoint.py``) and add ``zero/``: DeepSpeed's own checkpoint
(``engine.save_checkpoint``: each process's optimizer partition and the trained weights; the frozen
weights are left out). ``trainable.safetensors`` holds the gathered fp32 trained weights (DeepSpeed's
master copy), the same file a ``ddp`` run writes; the adapter export is built from them. RNG states and
the data position are saved as for every strategy. ``zero/`` is written by every process into one
temporary folder that moves into the checkpoint's own temporary before it is renamed into place.

DeepSpeed reads its files with pickle; before it does, each file is read with ``torch.load(weights_only=True)``
allowing only DeepSpeed's own small state classes, so a tampered file is refused instead of run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from motionkit.errors import MotionkitError

ZERO_STAGES = {"zero2": 2, "zero3": 3}
ZERO_DIR = "zero"  # DeepSpeed's part of a checkpoint folder
ZERO_TAG = "state"  # DeepSpeed's tag (sub-folder) inside ZERO_DIR
CPU_REASON = (
    "DeepSpeed ZeRO needs CUDA GPUs (accelerate turns DeepSpeed off on CPU): use distributed.strategy fsdp2, "
    "which shards the same state and runs on CPU"
)


def is_zero(strategy: str) -> bool:
    return strategy in ZERO_STAGES


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def check_zero_available(strategy: str, cpu: bool, environ: Mapping[str, str] | None = None) -> None:
    """Raise ``MotionkitError`` (one line) where ``strategy`` (zero2/zero3) cannot run here."""
    env = os.environ if environ is None else environ
    if cpu or not torch.cuda.is_available():
        raise MotionkitError(f"distributed.strategy {strategy}: {CPU_REASON}")
    if not deepspeed_installed():
        raise MotionkitError(
            f"distributed.strategy {strategy} needs DeepSpeed, which is not installed: pip install deepspeed "
            "(or use distributed.strategy fsdp2)"
        )
    if env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none") not in ("", "none"):
        raise MotionkitError(
            f"an accelerate DeepSpeed config file was given, but distributed.strategy {strategy} builds DeepSpeed's "
            "config from the training config: launch without deepspeed_config_file"
        )


def ensure_process_group_env(environ: MutableMapping[str, str] | None = None) -> None:
    """A plain process (no launcher) becomes a one-process group: DeepSpeed's engine needs one, and
    accelerate enables DeepSpeed only where ``LOCAL_RANK`` is set."""
    env = os.environ if environ is None else environ
    if "LOCAL_RANK" in env or "WORLD_SIZE" in env:
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def deepspeed_plugin(strategy: str, *, batch_size: int, gradient_accumulation_steps: int, max_grad_norm: float) -> Any:
    """accelerate's ``DeepSpeedPlugin`` for ``strategy``: every field given, so nothing comes from the
    launcher's environment. No offload; clipping off where ``max_grad_norm`` is 0."""
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(
        zero_stage=ZERO_STAGES[strategy],
        gradient_accumulation_steps=gradient_accumulation_steps,
        gradient_clipping=float(max_grad_norm),
        offload_optimizer_device="none",
        offload_param_device="none",
        zero3_init_flag=False,  # the models are built whole, then the engine partitions them
        zero3_save_16bit_model=False,
    )
    if max_grad_norm <= 0:
        # Some accelerate releases write the 0.0 they are given; DeepSpeed's "no clipping" is the key's absence.
        plugin.deepspeed_config.pop("gradient_clipping", None)
    # The loader is motionkit's (a resumable sampler), not prepared by accelerate: give the batch size here.
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = batch_size
    return plugin


def cpu_engine(module: nn.Module, trainable: list[nn.Parameter], config: Any, strategy: str) -> Any:
    """DeepSpeed's own engine (ZeRO stage of ``strategy``, zero2/zero3) around ``module`` with AdamW on
    ``trainable``, set up from the training config ``config`` (a TrainConfig) as the trainer's ZeRO path sets
    up accelerate's plugin: same clipping, batch size, accumulation and AdamW settings.

    For DeepSpeed's CPU accelerator (``DS_ACCELERATOR=cpu``, gloo), outside accelerate, which turns DeepSpeed
    off on CPU: the tests and the distributed benchmark run ZeRO there with it. Every process of the group
    calls it (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` set, or a process group already up)."""
    import deepspeed

    plugin = deepspeed_plugin(
        strategy,
        batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_grad_norm=config.max_grad_norm,
    )
    ds_config = dict(plugin.deepspeed_config, zero_allow_untested_optimizer=True)  # torch's AdamW, as on GPUs
    ds_config.pop("train_batch_size")  # "auto" is accelerate's to fill: DeepSpeed derives it from the rest
    optimizer = torch.optim.AdamW(
        trainable, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay, eps=config.adam_epsilon,
    )  # fmt: skip
    engine, *_ = deepspeed.initialize(model=module, optimizer=optimizer, config=ds_config)
    return engine


def is_partitioned(param: torch.Tensor) -> bool:
    """A ZeRO-3 parameter (its data lives in per-process partitions)."""
    return hasattr(param, "ds_id")


def local_part(param: torch.Tensor) -> torch.Tensor:
    """This process's part of a ZeRO-3 parameter (the parameter itself otherwise)."""
    return param.ds_tensor if is_partitioned(param) else param


@contextlib.contextmanager
def gathered(module: nn.Module) -> Iterator[None]:
    """``module``'s ZeRO-3 parameters whole for the block (read-only; a collective); a no-op otherwise."""
    params = [p for p in module.parameters() if is_partitioned(p)]
    if not params:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        yield


def full_trained_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters of ``module`` whole, in fp32 (DeepSpeed's master copy), on CPU. Every
    process must call it (a gather under ZeRO-3)."""
    from deepspeed.utils import safe_get_full_fp32_param

    out = {}
    for name, param in module.named_parameters():
        if param.requires_grad:
            out[name] = safe_get_full_fp32_param(param).detach().float().cpu()
    return out


def full_module_state(module: nn.Module, keep: bool = True) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` whole on CPU, its trained tensors replaced by their fp32 master copies
    (every process must call it; ``keep=False``: this process only takes part and gets an empty dict)."""
    trained = full_trained_state(module)
    with gathered(module):
        state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()} if keep else {}
    if not keep:
        return {}
    state.update(trained)
    return state


def write_engine_state(engine: Any, root: Path, accelerator: Any) -> Path:
    """Every process writes its part of DeepSpeed's checkpoint into one temporary folder under ``root``
    (named by the main process, so a killed run's leftover is cleaned as any checkpoint temporary).
    Returns that folder."""
    from accelerate.utils import broadcast_object_list

    from motionkit.utils.atomic import temp_sibling

    name = [None]
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        folder = temp_sibling(root / ZERO_DIR)
        folder.mkdir()
        name = [str(folder)]
    folder = Path(broadcast_object_list(name, from_process=0)[0])
    engine.save_checkpoint(str(folder), tag=ZERO_TAG, save_latest=False, exclude_frozen_parameters=True)
    accelerator.wait_for_everyone()
    return folder


def _allowed_classes() -> list[type]:
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, LossScaler, DynamicLossScaler, fragment_address]


def check_weights_only(folder: Path) -> None:
    """Refuse DeepSpeed files that hold anything but tensors, plain containers and DeepSpeed's state classes."""
    allowed = _allowed_classes()
    for path in sorted(folder.rglob("*.pt")):
        try:
            with torch.serialization.safe_globals(allowed):
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure means the file is not plain state
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise MotionkitError(
                f"{path}: not a plain DeepSpeed state file ({first[:160]}); resume from a checkpoint this run wrote"
            ) from None


def load_engine_state(engine: Any, checkpoint: Path, saved: Mapping[str, Any] | None, strategy: str, processes: int) -> None:
    """Load ``checkpoint``'s ``zero/`` into ``engine``: the trained weights and every process's optimizer
    partition. ``saved``: the checkpoint's ``training_state["zero"]`` (None: not written by a ZeRO run)."""
    folder = checkpoint / ZERO_DIR
    if saved is None or not (folder / ZERO_TAG).is_dir():
        raise MotionkitError(
            f"{checkpoint}: not written by a distributed.strategy {strategy} run (no {ZERO_DIR}/ state): resume it "
            "with the strategy that wrote it"
        )
    if saved.get("strategy") != strategy or int(saved.get("processes", -1)) != processes:
        raise MotionkitError(
            f"{checkpoint}: written by distributed.strategy {saved.get('strategy')} in {saved.get('processes')} "
            f"processes; resume with the same strategy and process count ({strategy} in {processes} here)"
        )
    check_weights_only(folder)
    loaded, _ = engine.load_checkpoint(
        str(folder), tag=ZERO_TAG, load_module_strict=False, load_optimizer_states=True, load_lr_scheduler_states=False
    )
    if loaded is None:
        raise MotionkitError(f"{folder}: DeepSpeed found no checkpoint to load; resume from an earlier checkpoint folder")


def saved_layout(strategy: str, processes: int) -> dict[str, Any]:
    """What ``training_state["zero"]`` records: DeepSpeed's partitions resume only in the same layout."""
    return {"strategy": strategy, "stage": ZERO_STAGES[strategy], "processes": processes}

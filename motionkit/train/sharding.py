"""FSDP2 for motion training: torch's ``fully_shard`` over the injected UNet, and the gathers and scatters
that keep checkpoints and exports in the one format every strategy writes.

Units: each motion module, the adapter's image-conditioning conv, and each of the UNet's down, mid and
up blocks are sharded on their own (their weights are gathered just before they run and freed after);
the root (the ``MotionUNet``) holds what is left (conv_in, time embedding, conv_out). Motion modules run
from forward hooks inside the UNet's blocks; a unit's own pre-forward hook gathers it wherever it is called.

accelerate 1.x applies its FSDP plugin only on accelerators (on CPU it silently prepares DDP), so motionkit
shards itself, the same way on CPU (gloo) and on GPUs (NCCL); accelerate still starts the processes, sets
the device, autocasts and gathers.

Checkpoints hold gathered (full) tensors: the trained weights and AdamW's state in the layout of a plain
``optimizer.state_dict()``. A sharded run's checkpoint is therefore the same file a DDP run writes, and it
resumes under either strategy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from motionkit.errors import MotionkitError


def is_sharded(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def local_view(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of ``tensor`` (the tensor itself when it is not sharded): for checks that
    need no communication."""
    return tensor.to_local() if is_sharded(tensor) else tensor


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole of ``tensor`` on CPU (a collective for sharded ones: every process must call it)."""
    whole = tensor.full_tensor() if is_sharded(tensor) else tensor
    return whole.detach().cpu()


def shard_units(motion_unet: nn.Module) -> list[nn.Module]:
    """The modules ``shard_motion_unet`` shards on their own, innermost first."""
    adapter, unet = motion_unet.adapter, motion_unet.unet
    units: list[nn.Module] = []
    blocks = [*adapter.down_blocks, *adapter.up_blocks] + ([adapter.mid_block] if adapter.mid_block is not None else [])
    for block in blocks:
        units.extend(block.motion_modules)
    if adapter.image_cond_conv is not None:
        units.append(adapter.image_cond_conv)
    units.extend([*unet.down_blocks] + ([unet.mid_block] if unet.mid_block is not None else []) + [*unet.up_blocks])
    return units


def shard_motion_unet(motion_unet: nn.Module, device: torch.device) -> nn.Module:
    """Shard ``motion_unet`` (a ``MotionUNet``) in place across every process of the default process group."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if not dist.is_initialized():
        raise MotionkitError(
            "distributed.strategy fsdp2 needs a process group: launch with 'accelerate launch --multi_gpu "
            "--num_processes N' (add cpu=true on CPU)"
        )
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for unit in shard_units(motion_unet):
        fully_shard(unit, mesh=mesh)
    fully_shard(motion_unet, mesh=mesh)
    return motion_unet


def full_state(named: Iterable[tuple[str, torch.Tensor]], keep: bool = True) -> dict[str, torch.Tensor]:
    """``name -> whole tensor on CPU`` (every process must call it, in the same order). ``keep=False``: this
    process only takes part in the gathers and drops each whole tensor at once (an empty dict comes back),
    so only the process that writes holds the whole set."""
    out = {}
    for name, tensor in named:
        whole = full_tensor(tensor)
        if keep:
            out[name] = whole
    return out


def full_optimizer_state(optimizer: torch.optim.Optimizer, keep: bool = True) -> dict[str, Any]:
    """``optimizer.state_dict()`` with every sharded state tensor gathered whole (a collective; ``keep`` as
    in ``full_state``: without it the state entries come back empty)."""
    state = optimizer.state_dict()
    gathered = {}
    for index, entry in state["state"].items():
        whole = {key: full_tensor(value) if isinstance(value, torch.Tensor) else value for key, value in entry.items()}
        if keep:
            gathered[index] = whole
    return {**state, "state": gathered}


def _like(whole: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``whole`` laid out as ``target``: this process's shard of it when ``target`` is sharded (each
    process already holds the whole tensor, read from the checkpoint, so no data moves)."""
    from torch.distributed.tensor import distribute_tensor

    if not is_sharded(target):
        return whole.to(target.device, target.dtype)
    if tuple(whole.shape) != tuple(target.shape):
        raise MotionkitError(
            f"a checkpoint tensor of shape {tuple(whole.shape)} does not fit {tuple(target.shape)}: resume with the run's config"
        )
    whole = whole.to(target.device, target.dtype)
    return distribute_tensor(whole, target.device_mesh, target.placements, src_data_rank=None)


@torch.no_grad()
def load_full_into(params: dict[str, nn.Parameter], state: dict[str, torch.Tensor]) -> None:
    """Copy whole tensors from a checkpoint into (possibly sharded) parameters."""
    for name, whole in state.items():
        params[name].copy_(_like(whole, params[name]))


def shard_optimizer_state(state: dict[str, Any], params: list[torch.Tensor]) -> dict[str, Any]:
    """A gathered optimizer state (``full_optimizer_state`` or a DDP run's) laid out for ``params``, the
    optimizer's parameters in order; scalars such as Adam's ``step`` stay as they are."""
    laid_out = {}
    for index, entry in state["state"].items():
        param = params[int(index)]
        laid_out[index] = {
            key: _like(value, param) if key != "step" and isinstance(value, torch.Tensor) else value
            for key, value in entry.items()
        }
    return {**state, "state": laid_out}

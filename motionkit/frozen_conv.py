"""Frozen convolutions keep only their input's shape for backward, not the input itself.

Autograd saves a convolution's input for the weight's gradient even when the weight is frozen; the
input's own gradient needs the weight alone. While a motion adapter trains in a frozen UNet, every UNet
convolution would hold a copy-sized activation for nothing. These hooks replace that saved input with a
zero-stride placeholder of the same shape: backward computes the same input gradient, and the
activation is freed as soon as forward is done with it.

Only on CPU, where it is verified; only when the weight is frozen; never inside the UNet's own gradient
checkpointing, whose recompute matches saved tensors one by one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _shape_only(x: torch.Tensor) -> torch.autograd.graph.saved_tensors_hooks:
    # Identify the input by address and layout: holding x itself here would keep it alive.
    identity = (x.data_ptr(), x.shape, x.stride())

    def pack(saved: torch.Tensor) -> Any:
        if (saved.data_ptr(), saved.shape, saved.stride()) == identity:
            return (saved.shape, saved.dtype, saved.device)
        return saved

    def unpack(packed: Any) -> torch.Tensor:
        if isinstance(packed, tuple):
            shape, dtype, device = packed
            return torch.zeros((), dtype=dtype, device=device).expand(shape)
        return packed

    return torch.autograd.graph.saved_tensors_hooks(pack, unpack)


class FrozenConvInputs:
    """Hooks on every ``nn.Conv2d`` of ``model``; ``remove()`` takes them off again."""

    def __init__(self, model: nn.Module):
        self.model = model
        # Set by the caller once per forward: off under the model's own gradient checkpointing. Reading
        # diffusers' ``is_gradient_checkpointing`` here would walk every module at every convolution.
        self.enabled = True
        self._handles = []
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                self._handles.append(module.register_forward_pre_hook(self._enter))
                self._handles.append(module.register_forward_hook(self._leave, always_call=True))
        self._open: list[torch.autograd.graph.saved_tensors_hooks | None] = []

    def _applies(self, module: nn.Conv2d, x: Any) -> bool:
        return (
            self.enabled
            and torch.is_grad_enabled()
            and isinstance(x, torch.Tensor)
            and x.requires_grad
            and x.device.type == "cpu"
            and not module.weight.requires_grad
        )

    def _enter(self, module: nn.Conv2d, args: tuple) -> None:
        hooks = _shape_only(args[0]) if args and self._applies(module, args[0]) else None
        if hooks is not None:
            hooks.__enter__()
        self._open.append(hooks)

    def _leave(self, _module: nn.Conv2d, _args: tuple, _out: Any) -> None:
        hooks = self._open.pop()
        if hooks is not None:
            hooks.__exit__(None, None, None)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

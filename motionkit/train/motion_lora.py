"""MotionLoRA training: low-rank updates of a frozen adapter's temporal attention, through peft.

Only ``to_q / to_k / to_v / to_out.0`` of the temporal attentions get LoRA layers (the only linear
layers with those names in an adapter); every adapter weight stays frozen. The result is written with
``motionkit.formats.save_motion_lora``: PEFT keys with the ``unet.`` prefix, which
``motionkit.formats.load_motion_lora`` and diffusers' ``load_lora_weights`` both read.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from motionkit.errors import MotionkitError

TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
LORA_NAME = "motion_lora"


def add_trainable_lora(adapter: nn.Module, rank: int, alpha: float, name: str = LORA_NAME) -> list[nn.Parameter]:
    """Freeze ``adapter`` and give its temporal attentions a fresh LoRA ``name`` (B = 0: no change yet).
    Returns the LoRA parameters, the only trainable ones."""
    from peft import LoraConfig

    if getattr(adapter, "peft_config", None) and name in adapter.peft_config:
        raise MotionkitError(f"the adapter already has a LoRA named {name!r}: remove it before training a new one")
    adapter.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(TARGET_MODULES), init_lora_weights=True)
    adapter.add_adapter(config, adapter_name=name)
    adapter.set_adapter(name)
    params = []
    for param_name, param in adapter.named_parameters():
        trainable = f".lora_A.{name}." in param_name or f".lora_B.{name}." in param_name
        param.requires_grad_(trainable)
        if trainable:
            params.append(param)
    if not params:
        raise MotionkitError("the adapter has no temporal attention to put a MotionLoRA on: use an adapter with attention")
    return params


def save_trained_lora(adapter: nn.Module, path: str | Path, name: str = LORA_NAME) -> Path:
    """Write the LoRA ``name`` of ``adapter`` (a ``.safetensors`` file) in motionkit's MotionLoRA format."""
    from motionkit.formats import save_motion_lora

    return save_motion_lora(adapter, path, name=name)

"""Attach a ``MotionAdapter`` to a frozen diffusers ``UNet2DConditionModel`` and detach it again.

Nothing in the UNet is copied or replaced: each motion module runs from a forward hook on the
layer it follows (the block's spatial transformer, or its resnet when the block has no attention),
which is where AnimateDiff and diffusers' ``UNetMotionModel`` place them. Removing the hooks gives
back the UNet exactly as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from motionkit.adapter import MotionAdapter
from motionkit.errors import LayoutMismatchError, MotionkitError
from motionkit.feed_forward_chunks import chunked_feed_forwards, transformer_blocks
from motionkit.frozen_conv import FrozenConvInputs
from motionkit.unet_layout import Layout, unet_layout

__all__ = ["Layout", "MotionUNet", "check_fits", "inject", "unet_layout"]


def check_fits(unet: nn.Module, adapter: MotionAdapter) -> None:
    unet_shape, adapter_shape = unet_layout(unet), adapter.layout()
    fits = (
        unet_shape.block_out_channels == adapter_shape.block_out_channels
        and unet_shape.layers_per_block == adapter_shape.layers_per_block
        and adapter_shape.mid_block_layers in (0, unet_shape.mid_block_layers)
        and all(len(u.resnets) == len(a.motion_modules) for u, a in zip(unet.up_blocks, adapter.up_blocks))
    )
    if not fits:
        raise LayoutMismatchError(
            f"adapter layout ({adapter_shape}) does not fit the UNet ({unet_shape}): "
            "use an adapter made for this base model family"
        )
    conv_in = getattr(unet, "conv_in", None)
    cond = adapter.image_cond_conv
    if cond is not None and conv_in is not None and cond.out_channels != conv_in.out_channels:
        raise LayoutMismatchError(
            f"the adapter's image-conditioning branch feeds {cond.out_channels} channels but the UNet's conv_in "
            f"gives {conv_in.out_channels}: use an adapter made for this base model family"
        )


def _hook_targets(block: nn.Module) -> list[nn.Module]:
    """The layers a block's motion modules follow, in order."""
    attentions = getattr(block, "attentions", None)
    return list(attentions) if attentions else list(block.resnets)


@dataclass
class MotionUNetOutput:
    sample: torch.Tensor


@contextlib.contextmanager
def image_model_alone(motion_unet: Any) -> Iterator[Any]:
    """Inside the block ``motion_unet`` runs the image model alone: every motion module skipped
    (``motion_strength`` 0), the strength it had restored after, even on error."""
    kept, motion_unet.motion_strength = motion_unet.motion_strength, 0.0
    try:
        yield motion_unet
    finally:
        motion_unet.motion_strength = kept


class MotionUNet(nn.Module):
    """A UNet with an adapter's motion modules running inside it; forward takes ``[B, C, F, H, W]``."""

    def __init__(self, unet: nn.Module, adapter: MotionAdapter):
        super().__init__()
        if getattr(unet, "_motionkit_injected", False):
            raise MotionkitError("this UNet already runs a motion adapter: eject() it before injecting another")
        check_fits(unet, adapter)
        self.unet = unet
        self.adapter = adapter
        self.num_frames = 1
        # Scale on every motion module's residual: 1.0 as trained, 0.0 the image model alone.
        self.motion_strength = 1.0
        self._image_cond: torch.Tensor | None = None
        self._handles = []
        self.frozen_convs: FrozenConvInputs | None = None
        # Frozen UNet convolutions keep no input for backward (motionkit.frozen_conv); False keeps them.
        self.lean_frozen_convs = True
        # On CPU the UNet's feed-forwards run a few frames at a time (motionkit.feed_forward_chunks).
        self.chunk_feed_forwards = True
        self.attach()

    def attach(self) -> None:
        """(Re-)register the hooks; ``eject`` followed by ``attach`` restores the injected state, so the same
        ``MotionUNet`` (e.g. one a trainer wrapped for DDP) can lend its UNet to a pipeline in between."""
        unet, adapter = self.unet, self.adapter
        if getattr(unet, "_motionkit_injected", False):
            if self._handles:
                return
            raise MotionkitError("this UNet already runs a motion adapter: eject() it before injecting another")
        self._requires_grad = {name: p.requires_grad for name, p in unet.named_parameters()}
        unet.requires_grad_(False)
        pairs = list(zip(unet.down_blocks, adapter.down_blocks)) + list(zip(unet.up_blocks, adapter.up_blocks))
        if adapter.mid_block is not None:
            pairs.append((unet.mid_block, adapter.mid_block))
        for block, motion in pairs:
            for target, module in zip(_hook_targets(block), motion.motion_modules):
                self._handles.append(target.register_forward_hook(self._motion_hook(module)))
        if adapter.image_cond_conv is not None:
            self._handles.append(unet.conv_in.register_forward_hook(self._image_cond_hook))
        self.frozen_convs = FrozenConvInputs(unet)
        self._feed_forward_blocks = transformer_blocks(unet)
        unet._motionkit_injected = True

    # -- hooks ------------------------------------------------------------------------------------

    def _motion_hook(self, module: nn.Module):
        def run(x: torch.Tensor) -> torch.Tensor:
            strength = self.motion_strength
            if strength == 0.0:
                return x
            out = module(x, self.num_frames)
            return out if strength == 1.0 else x + strength * (out - x)

        def hook(_layer: nn.Module, _args: Any, output: Any) -> Any:
            if isinstance(output, torch.Tensor):
                return run(output)
            if isinstance(output, tuple):  # spatial transformers return (sample,) with return_dict=False
                return (run(output[0]),) + tuple(output[1:])
            output.sample = run(output.sample)
            return output

        return hook

    def _image_cond_hook(self, _layer: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
        if self._image_cond is None:
            return output
        return output + self.adapter.image_cond_conv(self._image_cond.to(output.dtype))

    # -- forward ----------------------------------------------------------------------------------

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        image_cond: torch.Tensor | None = None,
        return_dict: bool = True,
        **unet_kwargs: Any,
    ) -> MotionUNetOutput | tuple[torch.Tensor]:
        """``sample``: ``[B, C, F, H, W]``; ``encoder_hidden_states``: ``[B, N, D]`` or per frame ``[B*F, N, D]``.

        ``image_cond``: ``[B, C_cond, F, H, W]`` or ``[B, C_cond, H, W]`` for adapters with an
        image-conditioning branch (conditioning latent and mask). Returns ``.sample`` as ``[B, C, F, H, W]``.
        """
        if sample.ndim != 5:
            raise MotionkitError(f"sample must be [batch, channels, frames, height, width], got shape {tuple(sample.shape)}")
        b, c, f, h, w = sample.shape
        frames_in_batch = sample.transpose(1, 2).reshape(b * f, c, h, w)
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1)
        timestep = self._per_frame(timestep.expand(b) if timestep.numel() == 1 else timestep, b, f)
        encoder_hidden_states = self._per_frame(encoder_hidden_states, b, f)
        if added_cond_kwargs:
            # IP-Adapter's image_embeds is a list, one tensor per adapter.
            added_cond_kwargs = {
                k: [self._per_frame(t, b, f) for t in v] if isinstance(v, list) else self._per_frame(v, b, f)
                for k, v in added_cond_kwargs.items()
            }
        self._image_cond = self._cond_per_frame(image_cond, b, f) if image_cond is not None else None
        if image_cond is not None and self.adapter.image_cond_conv is None:
            raise MotionkitError("image_cond was given but this adapter has no image-conditioning branch")
        self.num_frames = f
        # Read once a forward, and only with autograd on (without it nothing is checkpointed or kept for
        # backward): diffusers' property walks every module of the UNet.
        checkpointing = torch.is_grad_enabled() and bool(getattr(self.unet, "is_gradient_checkpointing", False))
        # Neither saving runs under the UNet's checkpointing: its recompute must match saved tensors one by one.
        self.frozen_convs.enabled = self.lean_frozen_convs and not checkpointing
        chunks = (
            chunked_feed_forwards(self._feed_forward_blocks, b * f, h * w)
            if self.chunk_feed_forwards and sample.device.type == "cpu" and not checkpointing
            else contextlib.nullcontext()
        )
        try:
            with chunks:
                out = self.unet(
                    frames_in_batch,
                    timestep,
                    encoder_hidden_states,
                    added_cond_kwargs=added_cond_kwargs,
                    cross_attention_kwargs=cross_attention_kwargs,
                    return_dict=False,
                    **unet_kwargs,
                )[0]
        finally:
            self._image_cond = None
        out = out.reshape(b, f, *out.shape[1:]).transpose(1, 2)
        return MotionUNetOutput(sample=out) if return_dict else (out,)

    @staticmethod
    def _per_frame(t: torch.Tensor, b: int, f: int) -> torch.Tensor:
        """Repeat a per-video tensor for every frame; per-frame ones (leading dim B*F) pass through."""
        if t.shape[0] == b * f and f > 1:
            return t
        if t.shape[0] != b:
            raise MotionkitError(
                f"conditioning with leading size {t.shape[0]} fits neither {b} videos nor {b * f} frames"
            )
        return t.repeat_interleave(f, dim=0)

    @staticmethod
    def _cond_per_frame(cond: torch.Tensor, b: int, f: int) -> torch.Tensor:
        if cond.ndim == 4:
            cond = cond.unsqueeze(2).expand(-1, -1, f, -1, -1)
        return cond.transpose(1, 2).reshape(b * f, *cond.shape[1:2], *cond.shape[3:])

    # -- conveniences -----------------------------------------------------------------------------

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def set_attention_backend(self, name: str) -> None:
        self.adapter.set_attention_backend(name)

    def enable_gradient_checkpointing(self, spatial: bool = True) -> None:
        """Checkpoint every motion module (and, with ``spatial``, the UNet's own blocks)."""
        self.adapter.enable_gradient_checkpointing()
        if spatial and getattr(self.unet, "_supports_gradient_checkpointing", False):
            self.unet.enable_gradient_checkpointing()

    def disable_gradient_checkpointing(self) -> None:
        self.adapter.disable_gradient_checkpointing()
        if getattr(self.unet, "_supports_gradient_checkpointing", False):
            self.unet.disable_gradient_checkpointing()

    def eject(self) -> nn.Module:
        """Remove every hook and restore ``requires_grad``: the UNet is exactly as it was before ``inject``."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self.frozen_convs is not None:
            self.frozen_convs.remove()
            self.frozen_convs = None
        self.unet._motionkit_injected = False
        for name, p in self.unet.named_parameters():
            p.requires_grad_(self._requires_grad.get(name, True))
        return self.unet


def inject(unet: nn.Module, adapter: MotionAdapter) -> MotionUNet:
    """Run ``adapter``'s motion modules inside ``unet`` (frozen; adapter parameters stay trainable).

    The adapter is moved to the UNet's device and dtype. Raises ``LayoutMismatchError`` when the
    block layouts differ.
    """
    if not isinstance(adapter, MotionAdapter):
        raise MotionkitError(f"expected a motionkit MotionAdapter, got {type(adapter).__name__}: use motionkit.load_adapter")
    param, current = next(unet.parameters()), next(adapter.parameters())
    if (current.device, current.dtype) != (param.device, param.dtype):
        # nn.Module.to: diffusers' ModelMixin.to warns about fp32-pinned modules the adapter does not have.
        torch.nn.Module.to(adapter, device=param.device, dtype=param.dtype)
    return MotionUNet(unet, adapter)

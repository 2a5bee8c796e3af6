"""A per-frame ControlNet for video: diffusers' ``ControlNetModel`` beside a frozen UNet and a frozen motion
adapter, conditioned on one control map (depth, edges, ...) per frame.

The ControlNet sees what ``MotionPipeline`` gives it at sampling time (``motionkit.pipeline.control``): the
noisy latents with frames flattened to ``B*F`` (video-major), the timestep and the text repeated per frame,
and each frame's control map in pixels, ``[0, 1]``, at the output size. Its residuals (one per UNet down-block
output plus the mid block, ``B*F`` first) are added inside the frozen motion UNet, whose temporal layers see
every frame controlled.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from motionkit.errors import MotionkitError
from motionkit.train.config import EncoderConfig


def controlnet_from_unet(unet: nn.Module, config: EncoderConfig, vae_scale_factor: int) -> Any:
    """A ``ControlNetModel`` shaped like ``unet`` (diffusers' ``ControlNetModel.from_unet``: its down and mid
    blocks copied from the UNet when ``config.init_from_unet``), its map encoder of
    ``config.conditioning_embedding_out_channels`` bringing ``[3, H, W]`` maps down by ``vae_scale_factor``
    (its last convolution at zero unless ``config.zero_map_embedding`` is false)."""
    from diffusers import ControlNetModel

    widths = tuple(config.conditioning_embedding_out_channels)
    steps = round(math.log2(vae_scale_factor))
    if 2 ** (len(widths) - 1) != vae_scale_factor:
        raise MotionkitError(
            f"encoder.conditioning_embedding_out_channels {list(widths)} shrinks control maps "
            f"{2 ** (len(widths) - 1)}x but the VAE shrinks images {vae_scale_factor}x: give {steps + 1} widths "
            f"(one stride-2 step between each pair), e.g. {[16 * 2 ** min(i, 1) for i in range(steps + 1)]}"
        )
    net = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=widths, load_weights_from_unet=config.init_from_unet
    )
    if not config.zero_map_embedding:
        # PyTorch's default init, from the global RNG the trainer seeds: the same on every process.
        net.controlnet_cond_embedding.conv_out.reset_parameters()
    return net


def training_control(
    control: torch.Tensor, config: EncoderConfig, generators: list[torch.Generator]
) -> tuple[torch.Tensor, list[bool]]:
    """The ControlNet's training input from ``control`` ``[B, F, 3, H, W]`` maps in [0, 1]: with
    ``cond_dropout`` a clip's maps are black (no control). One draw per clip from its own generator."""
    dropped = [float(torch.rand((), generator=g)) < config.cond_dropout for g in generators]
    if any(dropped):
        keep = torch.tensor([0.0 if d else 1.0 for d in dropped], device=control.device, dtype=control.dtype)
        control = control * keep.view(-1, 1, 1, 1, 1)
    return control, dropped


def controlnet_residuals(
    controlnet: nn.Module,
    sample: torch.Tensor,
    timesteps: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    control: torch.Tensor,
    conditioning_scale: float = 1.0,
    added_cond_kwargs: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Run ``controlnet`` on every frame of ``sample`` ``[B, C, F, h, w]`` with ``control`` ``[B, F, 3, H, W]``
    and return the UNet keyword arguments ``down_block_additional_residuals`` / ``mid_block_additional_residual``
    (``B*F`` first, as the motion UNet flattens frames)."""
    b, c, f, h, w = sample.shape
    if control.shape[:2] != (b, f):
        raise MotionkitError(
            f"control maps of shape {tuple(control.shape)} do not match {b} clips of {f} frames: give one map per frame"
        )
    dtype = next(controlnet.parameters()).dtype

    def per_frame(t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(f, dim=0) if t.shape[0] == b else t

    timesteps = timesteps.reshape(-1)
    t = timesteps.repeat_interleave(f) if timesteps.numel() == b else timesteps.expand(b * f)
    added = {k: per_frame(v).to(dtype) for k, v in added_cond_kwargs.items()} if added_cond_kwargs else None
    down, mid = controlnet(
        sample.transpose(1, 2).reshape(b * f, c, h, w).to(dtype),
        t,
        encoder_hidden_states=per_frame(encoder_hidden_states).to(dtype),
        controlnet_cond=control.reshape(b * f, *control.shape[2:]).to(dtype),
        conditioning_scale=conditioning_scale,
        added_cond_kwargs=added,
        return_dict=False,
    )
    return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}

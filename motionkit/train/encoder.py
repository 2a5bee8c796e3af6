"""A condition encoder for image-to-video: diffusers' ``SparseControlNetModel`` (AnimateDiff v3 SparseCtrl,
RGB variant) beside a frozen UNet and a frozen motion adapter.

The encoder's input is what ``AnimateDiffSparseControlNetPipeline`` builds at sampling time:
- ``controlnet_cond`` ``[B, 4, F, h, w]``: the VAE latents (x ``scaling_factor``) of the keyframes, placed on
  their frames, zeros elsewhere (``use_simplified_condition_embedding=True``: latents, not pixels);
- ``conditioning_mask`` ``[B, 1, F, h, w]``: 1 on keyframes, 0 elsewhere (``concat_conditioning_mask``).
The encoder ignores the noisy latents themselves (it zeroes them), reads the timestep and the text, and
returns one residual per UNet down-block output plus one for the mid block, frames flattened to ``B*F``;
they are added inside the frozen UNet (``down_block_additional_residuals`` / ``mid_block_additional_residual``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from motionkit.errors import MotionkitError
from motionkit.train.config import EncoderConfig

CONDITIONING_CHANNELS = 4  # VAE latent channels: the RGB variant encodes keyframes with the VAE


def sparse_controlnet_from_unet(unet: nn.Module, *, load_weights: bool = True, motion_max_seq_length: int = 32) -> Any:
    """A ``SparseControlNetModel`` shaped like ``unet``'s down and mid blocks (RGB variant: latents of
    keyframes plus a mask channel, simplified condition embedding), its spatial weights copied from ``unet``
    when ``load_weights`` (diffusers' ``SparseControlNetModel.from_unet``, without its edit of the UNet's
    config); the temporal layers, the condition embedding and the zero convolutions start fresh."""
    from diffusers import SparseControlNetModel

    cfg = unet.config
    if getattr(cfg, "addition_embed_type", None) is not None:
        raise MotionkitError(
            "SparseCtrl encoders exist for SD 1.x / 2.x UNets only: this base has added embeddings (SDXL); "
            "train the adapter's image branch instead"
        )
    kinds = []
    for kind in cfg.down_block_types:
        if "CrossAttn" in kind:
            kinds.append("CrossAttnDownBlockMotion")
        elif "Down" in kind:
            kinds.append("DownBlockMotion")
        else:
            raise MotionkitError(f"the UNet's down block {kind!r} has no SparseCtrl counterpart")
    encoder = SparseControlNetModel(
        in_channels=cfg.in_channels,
        conditioning_channels=CONDITIONING_CHANNELS,
        flip_sin_to_cos=cfg.flip_sin_to_cos,
        freq_shift=cfg.freq_shift,
        down_block_types=tuple(kinds),
        only_cross_attention=cfg.only_cross_attention,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        downsample_padding=cfg.downsample_padding,
        mid_block_scale_factor=cfg.mid_block_scale_factor,
        act_fn=cfg.act_fn,
        norm_num_groups=cfg.norm_num_groups,
        norm_eps=cfg.norm_eps,
        cross_attention_dim=cfg.cross_attention_dim,
        transformer_layers_per_block=getattr(cfg, "transformer_layers_per_block", 1),
        attention_head_dim=cfg.attention_head_dim,
        num_attention_heads=cfg.num_attention_heads,
        use_linear_projection=cfg.use_linear_projection,
        upcast_attention=cfg.upcast_attention,
        resnet_time_scale_shift=cfg.resnet_time_scale_shift,
        motion_max_seq_length=motion_max_seq_length,
        concat_conditioning_mask=True,
        use_simplified_condition_embedding=True,
    )
    if load_weights:
        # strict=False: the encoder's blocks also hold temporal layers the UNet lacks.
        for name in ("conv_in", "time_proj", "time_embedding", "down_blocks", "mid_block"):
            getattr(encoder, name).load_state_dict(getattr(unet, name).state_dict(), strict=False)
    return encoder


def keyframe_condition(latents: torch.Tensor, keyframes: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``latents`` ``[B, 4, F, h, w]`` and each clip's keyframe indices -> ``(controlnet_cond, conditioning_mask)``
    as ``AnimateDiffSparseControlNetPipeline.prepare_sparse_control_conditioning`` lays them out."""
    b, c, f, h, w = latents.shape
    cond = torch.zeros_like(latents)
    mask = torch.zeros(b, 1, f, h, w, device=latents.device, dtype=latents.dtype)
    for i, frames in enumerate(keyframes):
        bad = [k for k in frames if not 0 <= k < f]
        if bad:
            raise MotionkitError(f"keyframe {bad[0]} is outside the clip's {f} frames")
        cond[i, :, frames] = latents[i, :, frames]
        mask[i, :, frames] = 1.0
    return cond, mask


def draw_keyframes(num_frames: int, config: EncoderConfig, generator: torch.Generator) -> list[int]:
    """One clip's keyframes: ``[0]`` with ``first_frame_prob``, ``[0, F-1]`` with ``first_last_prob``, else a
    random subset of 1..``max_keyframes`` frames (SparseCtrl's sparse random conditions)."""
    u = float(torch.rand((), generator=generator))
    if u < config.first_frame_prob or num_frames == 1:
        return [0]
    if u < config.first_frame_prob + config.first_last_prob:
        return [0, num_frames - 1]
    count = 1 + int(torch.randint(0, min(config.max_keyframes, num_frames), (), generator=generator))
    return sorted(torch.randperm(num_frames, generator=generator)[:count].tolist())


def training_keyframes(
    latents: torch.Tensor, config: EncoderConfig, generators: list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
    """The encoder's training input for ``latents`` ``[B, 4, F, h, w]``: keyframes drawn per clip, their latents
    noised by a strength from ``config.noise_aug``; with ``cond_dropout`` no keyframes at all. Returns
    ``(controlnet_cond, conditioning_mask, dropped)``; each clip draws from its own generator."""
    b, c, f, h, w = latents.shape
    low, high = config.noise_aug
    noisy = latents.clone()
    keyframes, dropped = [], []
    for i, generator in enumerate(generators):
        frames = draw_keyframes(f, config, generator)
        strength = low + (high - low) * float(torch.rand((), generator=generator))
        noise = torch.randn((c, len(frames), h, w), generator=generator).to(latents.device, latents.dtype)
        noisy[i, :, frames] = latents[i, :, frames] + strength * noise
        drop = float(torch.rand((), generator=generator)) < config.cond_dropout
        keyframes.append([] if drop else frames)
        dropped.append(drop)
    cond, mask = keyframe_condition(noisy, keyframes)
    return cond, mask, dropped


def encoder_residuals(
    encoder: nn.Module,
    sample: torch.Tensor,
    timesteps: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    controlnet_cond: torch.Tensor,
    conditioning_mask: torch.Tensor,
    conditioning_scale: float = 1.0,
    guess_mode: bool = False,
) -> dict[str, Any]:
    """Run the encoder as the SparseCtrl pipeline does (text repeated per frame) and return the UNet keyword
    arguments ``down_block_additional_residuals`` / ``mid_block_additional_residual``."""
    b, _, f = sample.shape[:3]
    hidden = encoder_hidden_states if encoder_hidden_states.shape[0] == b * f else encoder_hidden_states.repeat_interleave(f, dim=0)
    dtype = next(encoder.parameters()).dtype
    down, mid = encoder(
        sample.to(dtype),
        timesteps,
        encoder_hidden_states=hidden.to(dtype),
        controlnet_cond=controlnet_cond.to(dtype),
        conditioning_mask=conditioning_mask.to(dtype),
        conditioning_scale=conditioning_scale,
        guess_mode=guess_mode,
        return_dict=False,
    )
    return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}


class EncoderDenoiser(nn.Module):
    """A condition encoder and the frozen motion UNet as one module: what the trainer wraps and steps.

    ``residuals``: how the encoder runs, ``residuals(encoder, sample, timesteps, encoder_hidden_states,
    *condition, conditioning_scale=...)`` -> the UNet's residual keyword arguments (``encoder_residuals``
    for SparseCtrl, ``motionkit.train.controlnet.controlnet_residuals`` for a per-frame ControlNet)."""

    def __init__(
        self,
        encoder: nn.Module,
        motion_unet: nn.Module,
        conditioning_scale: float = 1.0,
        residuals: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.motion_unet = motion_unet
        self.conditioning_scale = conditioning_scale
        self.residuals = residuals or encoder_residuals

    def forward(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        *condition: torch.Tensor | None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``[B, C, F, h, w]`` noisy latents -> the frozen UNet's prediction with the encoder's residuals.
        ``condition``: the encoder's inputs (SparseCtrl: ``controlnet_cond, conditioning_mask``; ControlNet:
        ``control`` maps); none, or a first one of None: no encoder at all, the motion UNet alone."""
        extra: dict[str, Any] = {}
        if condition and condition[0] is not None:
            more = {"added_cond_kwargs": added_cond_kwargs} if added_cond_kwargs is not None else {}
            extra = self.residuals(
                self.encoder, sample, timesteps, encoder_hidden_states, *condition,
                conditioning_scale=self.conditioning_scale, **more,
            )
        return self.motion_unet(
            sample, timesteps, encoder_hidden_states, added_cond_kwargs=added_cond_kwargs, return_dict=False, **extra
        )[0]

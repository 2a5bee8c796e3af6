"""The image-conditioning input of an adapter with ``image_cond_channels=5`` (image-to-video).

Layout, shared by training and sampling: ``image_cond`` is ``[B, 5, F, h, w]`` where
- channel 0 is the mask: 1 on the conditioning frame, 0 on every other frame;
- channels 1-4 are the conditioning frame's VAE latent (x ``scaling_factor``), repeated on every frame
  (PIA's layout: each frame sees the image, the mask says which frame it is).
With ``ImageCondConfig.mask == "pia"`` the mask holds PIA's per-distance coefficients instead (1 on the
conditioning frame, 0.2-0.9 around it), the values ``MotionPipeline``'s ``motion_scale`` presets feed.
An all-zero ``image_cond`` means "no image" (condition dropout in training, the unconditional branch of
classifier-free guidance and plain text-to-video at sampling time).
"""

from __future__ import annotations

import torch

from motionkit.train.config import ImageCondConfig

IMAGE_COND_CHANNELS = 5


def image_cond_tensor(
    cond_latent: torch.Tensor, frame_index: torch.Tensor | int, num_frames: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``cond_latent``: ``[B, 4, h, w]``; ``frame_index``: the conditioning frame per video (or one for all).
    Returns ``[B, 5, F, h, w]`` in the layout above; ``mask`` (``[B, F]``) replaces the one-hot mask."""
    b, _, h, w = cond_latent.shape
    if mask is None:
        index = torch.as_tensor(frame_index, device=cond_latent.device).reshape(-1).expand(b)
        mask = torch.zeros(b, num_frames, device=cond_latent.device, dtype=cond_latent.dtype)
        mask[torch.arange(b, device=cond_latent.device), index] = 1.0
    mask = mask.to(cond_latent)[:, None, :, None, None].expand(b, 1, num_frames, h, w)
    latents = cond_latent.unsqueeze(2).expand(-1, -1, num_frames, -1, -1)
    return torch.cat([mask, latents], dim=1)


def _pia_mask(num_frames: int, index: int, generator: torch.Generator) -> torch.Tensor:
    from motionkit.pipeline.conditioning import MOTION_SCALES, mask_coefficients

    scale = int(torch.randint(0, len(MOTION_SCALES), (), generator=generator))
    return torch.tensor([mask_coefficients(num_frames, scale, cond_frame=index)])


def training_image_cond(
    latents: torch.Tensor, config: ImageCondConfig, generators: list[torch.Generator]
) -> torch.Tensor:
    """PIA's recipe for ``latents`` ``[B, 4, F, h, w]``: a conditioning frame per clip (frame 0 with
    probability ``config.first_frame_prob``, else a random one), its latent noised with a random strength
    from ``config.noise_aug``, the whole condition zeroed with probability ``config.cond_dropout``. Each
    clip draws from its own generator (same result on any process layout)."""
    b, c, f, h, w = latents.shape
    low, high = config.noise_aug
    conds = []
    for i, generator in enumerate(generators):
        # Nothing extra is drawn when first_frame_prob is 0: older runs keep their random streams.
        first = config.first_frame_prob > 0 and float(torch.rand((), generator=generator)) < config.first_frame_prob
        index = 0 if first else int(torch.randint(0, f, (), generator=generator))
        strength = low + (high - low) * float(torch.rand((), generator=generator))
        noise = torch.randn((c, h, w), generator=generator).to(latents.device, latents.dtype)
        dropped = float(torch.rand((), generator=generator)) < config.cond_dropout
        mask = _pia_mask(f, index, generator) if config.mask == "pia" else None
        cond = image_cond_tensor((latents[i, :, index] + strength * noise)[None], index, f, mask)
        conds.append(torch.zeros_like(cond) if dropped else cond)
    return torch.cat(conds)


def joint_dropout(prompts: list[str], generators: list[torch.Generator], probability: float) -> tuple[list[str], list[bool]]:
    """Drop caption and condition together with ``probability`` per clip: the prompts with dropped ones
    emptied (the unconditional prompt of guidance), and which clips dropped. Draws nothing at 0."""
    if probability <= 0:
        return list(prompts), [False] * len(prompts)
    dropped = [float(torch.rand((), generator=g)) < probability for g in generators]
    return ["" if drop else prompt for prompt, drop in zip(prompts, dropped)], dropped


def clean_conditioning_frames(
    noisy: torch.Tensor, timesteps: torch.Tensor, image_cond: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Put each clip's conditioning latent into the clip itself, clean, at timestep 0.

    ``noisy`` ``[B, C, F, h, w]``, ``timesteps`` ``[B]`` and ``image_cond`` in the layout above (the
    conditioning frame is where the mask peaks; an all-zero condition, dropped, changes nothing). Returns
    the model's input, its per-frame timesteps ``[B*F]`` (frame-major within each clip, as ``MotionUNet``
    flattens frames) and the per-frame loss mask ``[B, F]`` (0 on the clean frames, which have nothing to
    denoise)."""
    b, _, f = noisy.shape[:3]
    mask = image_cond[:, 0, :, 0, 0]
    present = image_cond.flatten(1).abs().amax(dim=1) > 0
    index = mask.argmax(dim=1)
    clips = torch.arange(b, device=noisy.device)[present]
    frames = index[present]
    noisy = noisy.clone()
    noisy[clips, :, frames] = image_cond[clips, 1:, frames].to(noisy.dtype)
    per_frame = timesteps.reshape(b, 1).expand(b, f).clone()
    per_frame[clips, frames] = 0
    loss_mask = torch.ones(b, f, device=noisy.device)
    loss_mask[clips, frames] = 0.0
    return noisy, per_frame.reshape(-1), loss_mask

"""Does a model use its image condition? Noise-prediction error per timestep, with and without the image.

For held-out clips (latents ``x0`` ``[N, 4, F, h, w]``) and a timestep ``t``, the clips are noised with fixed
noise (``x_t = sqrt(a) x0 + sqrt(1 - a) eps``) and the model predicts ``eps``; the error is the MSE on
frames ``1..F-1`` (frame 0 is the image itself) under each condition:
- ``real``: frame 0's latent as the condition (what image-to-video sampling feeds);
- ``zero``: the empty condition (what text-to-video and guidance's unconditional branch feed);
- ``none`` (encoders only): no encoder at all, the motion UNet alone;
- ``image_model`` (optional, ``probe_image_use(baseline=...)``): the zero condition through the image model
  alone (the same UNet with an identity adapter). ``zero / image_model`` below 1 means the motion modules
  lower the error by reading the other frames; at or above 1 near pure noise, a video's layout is left to
  each frame on its own (text-to-video frames that are each another scene);
- ``copy_first``: no network: ``eps`` solved from ``x_t`` assuming every frame's ``x0`` is frame 0's latent,
  ``(x_t - sqrt(a) x0[0]) / sqrt(1 - a)``. Near pure noise it is the error a model that merely holds the
  image would have; a model beats it only by also predicting the motion.
A model uses its image when ``real < zero`` at every ``t``. Two kinds of conditioned model are probed:
an adapter's image branch (``image_cond_conv``) and a SparseCtrl encoder (``SparseControlNetModel``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from motionkit.errors import MotionkitError
from motionkit.injection import image_model_alone

PROBE_TIMESTEPS = (1, 100, 300, 500, 700, 900, 961)
PROBE_SEED = 20_261_202  # the world seed of the held-out clips: the tiny family trains on seeds 1, 2 and 7

# (noisy latents, timestep, text hidden states, condition: "real" | "zero" | "none") -> predicted eps
Predictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str], torch.Tensor]


@dataclass(frozen=True)
class ProbeRow:
    timestep: int
    real: float
    zero: float
    copy_first: float
    none: float | None = None
    image_model: float | None = None

    @property
    def real_vs_zero(self) -> float:
        """``real / zero``: below 1 when the image lowers the error."""
        return self.real / self.zero

    @property
    def zero_vs_image_model(self) -> float | None:
        """``zero / image_model``: below 1 when the motion modules lower the error (``None`` without a baseline)."""
        return None if self.image_model is None else self.zero / self.image_model

    def as_dict(self) -> dict[str, float | int | None]:
        return {**asdict(self), "real_vs_zero": self.real_vs_zero, "zero_vs_image_model": self.zero_vs_image_model}


def world_clips(
    num_clips: int,
    num_frames: int = 8,
    stride: int = 2,
    size: int = 64,
    seed: int = PROBE_SEED,
    style: str = "natural",
    kinds: tuple[str, ...] | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """``num_clips`` world clips rendered from ``seed`` (``motionkit.data.world``, deterministic): pixels
    ``[N, F, 3, H, W]`` in [-1, 1], every ``stride``-th frame from frame 0, and their captions. ``kinds``:
    the scene kinds to draw from (default: all of the world's)."""
    from motionkit.data.world import KINDS, render_clips

    frames, captions = render_clips(
        num_clips, seed, frames=num_frames, stride=stride, size=size, style=style, kinds=KINDS if kinds is None else tuple(kinds)
    )
    clips = [torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float() / 127.5 - 1.0 for clip in frames]
    return torch.stack(clips), captions


def copy_first_eps(noisy: torch.Tensor, latents: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``eps`` solved from ``noisy`` assuming frame 0's latent on every frame (``alpha`` = alpha_bar_t)."""
    first = latents[:, :, :1].expand_as(latents)
    return (noisy - alpha.sqrt() * first) / (1 - alpha).sqrt()


@torch.no_grad()
def probe_image_use(
    predict: Predictor,
    latents: torch.Tensor,
    hidden: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    timesteps: tuple[int, ...] = PROBE_TIMESTEPS,
    seed: int = 0,
    conditions: tuple[str, ...] = ("real", "zero"),
    baseline: Predictor | None = None,
) -> list[ProbeRow]:
    """One ``ProbeRow`` per timestep: the mean squared eps error on frames 1..F-1 under each condition
    (the same noise for all of them; the noise of ``t`` comes from ``seed + t``), and ``baseline``'s (the image
    model alone) under the zero condition when one is given."""
    if latents.ndim != 5 or latents.shape[2] < 2:
        raise MotionkitError(f"the probe needs latents [clips, channels, frames >= 2, h, w], got {tuple(latents.shape)}")
    rows = []
    for t in timesteps:
        if not 0 <= t < len(alphas_cumprod):
            raise MotionkitError(f"timestep {t} is outside the schedule's 0..{len(alphas_cumprod) - 1}")
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed + t)).to(latents)
        alpha = alphas_cumprod[t].to(latents)
        noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
        step = torch.full((latents.shape[0],), t, dtype=torch.long, device=latents.device)

        def error(eps: torch.Tensor) -> float:
            return float((eps.float() - noise.float())[:, :, 1:].pow(2).mean())

        errors = {c: error(predict(noisy, step, hidden, c)) for c in conditions}
        image_model = None if baseline is None else error(baseline(noisy, step, hidden, "zero"))
        copy_first = error(copy_first_eps(noisy, latents, alpha))
        rows.append(ProbeRow(t, errors["real"], errors["zero"], copy_first, errors.get("none"), image_model))
    return rows


def branch_predictor(motion_unet: torch.nn.Module, latents: torch.Tensor) -> Predictor:
    """An adapter's image branch: ``real`` feeds frame 0's latent in the layout sampling uses (the mask the
    adapter was trained with; for a ``clean_conditioning_frame`` adapter also frame 0 itself clean, at
    timestep 0), ``zero`` an all-zero condition (frame 0 noised like the rest)."""
    from motionkit.pipeline.conditioning import image_cond
    from motionkit.train.image_cond import clean_conditioning_frames

    adapter = motion_unet.adapter
    if adapter.image_cond_conv is None:
        raise MotionkitError("this adapter has no image-conditioning branch (image_cond_channels=0): nothing to probe")
    mask = getattr(adapter.config, "image_cond_mask", "pia") or "pia"
    real = image_cond(latents[:, :, 0], latents.shape[2], mask=mask)
    dtype = next(motion_unet.unet.parameters()).dtype

    clean = bool(getattr(adapter.config, "clean_conditioning_frame", False))

    def predict(noisy: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor, condition: str) -> torch.Tensor:
        cond = real if condition == "real" else torch.zeros_like(real)
        if clean and condition == "real":
            noisy, t, _ = clean_conditioning_frames(noisy, t, cond)
        return motion_unet(noisy.to(dtype), t, hidden.to(dtype), image_cond=cond.to(dtype), return_dict=False)[0]

    return predict


def image_model_predictor(motion_unet: torch.nn.Module) -> Predictor:
    """The image model alone, frame by frame: the same UNet with every motion module skipped
    (``motion_strength`` 0) and no image branch; the condition is ignored. The baseline of ``probe_image_use``."""
    dtype = next(motion_unet.unet.parameters()).dtype

    def predict(noisy: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor, _condition: str) -> torch.Tensor:
        with image_model_alone(motion_unet):
            return motion_unet(noisy.to(dtype), t, hidden.to(dtype), return_dict=False)[0]

    return predict


def encoder_predictor(denoiser: torch.nn.Module, latents: torch.Tensor) -> Predictor:
    """A SparseCtrl encoder (``EncoderDenoiser``): ``real`` gives frame 0 as the one keyframe, ``zero`` no
    keyframe (zero latents and mask), ``none`` skips the encoder."""
    from motionkit.train.encoder import keyframe_condition

    cond, mask = keyframe_condition(latents, [[0]] * latents.shape[0])
    dtype = next(denoiser.motion_unet.unet.parameters()).dtype

    def predict(noisy: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor, condition: str) -> torch.Tensor:
        if condition == "none":
            return denoiser(noisy.to(dtype), t, hidden.to(dtype), None, None)
        scale = 1.0 if condition == "real" else 0.0
        return denoiser(noisy.to(dtype), t, hidden.to(dtype), cond * scale, mask * scale)

    return predict


def format_table(rows: list[ProbeRow]) -> str:
    """A plain-text table of ``rows`` (one line per timestep)."""
    has_none = any(r.none is not None for r in rows)
    has_baseline = any(r.image_model is not None for r in rows)
    head = ["t", "zero cond", "real image", "real/zero", "copy frame 0"] + (["no encoder"] if has_none else [])
    head += ["image model", "zero/image model"] if has_baseline else []
    lines = [head]
    for r in rows:
        line = [str(r.timestep), f"{r.zero:.5f}", f"{r.real:.5f}", f"{r.real_vs_zero:.3f}", f"{r.copy_first:.5f}"]
        line += [f"{r.none:.5f}"] if has_none else []
        line += [f"{r.image_model:.5f}", f"{r.zero_vs_image_model:.3f}"] if has_baseline else []
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in lines)

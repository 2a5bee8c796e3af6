"""FreeInit (Wu et al. 2023): re-initialise the starting noise from the low frequencies of a first pass.

Sampling runs ``iterations`` times. After each pass the clean result is diffused back to the last
training timestep with the *same* initial noise; its low spatio-temporal frequencies (3-D FFT over
frames, height, width) are kept and the high ones are replaced with fresh noise. The next pass starts
from that, which gives temporally more consistent videos at ``iterations`` times the cost.
``fast_sampling`` runs the early passes with fewer steps (coarse to fine).

The numerics are diffusers' ``FreeInitMixin`` (``MotionPipeline.enable_free_init`` takes its arguments), with
three differences, each where diffusers departs from the paper or from the pipeline's own noise:

- a pass is diffused to the timestep the next pass starts at, which is the last training step only with
  ``"trailing"`` spacing (diffusers always diffuses to the last training step, so a ``"leading"`` schedule
  starts its passes from noisier latents than it expects);
- the ``"ideal"`` filter keeps squared distances up to ``spatial_stop_frequency**2`` (diffusers and the
  original code compare the squared distance with twice the stop frequency);
- the fresh high frequencies go through the pipeline's noise prior (``motionkit.noise_prior``) as the first
  pass's noise did: correlated, mean-shared starting noise mixed with independent high frequencies would
  give every frame its own details and colour again. At correlation 0 with drawn means they are plain
  independent noise, as in diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.fft as fft
from diffusers.utils.torch_utils import randn_tensor

from motionkit.errors import MotionkitError

FILTERS = ("butterworth", "gaussian", "ideal")


def check_free_init(passes: int, name: str = "free_init") -> int:
    """``passes`` (FreeInit's sampling passes; 0 or 1: one pass, FreeInit off) as an int, or one line saying what is wrong."""
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 0:
        raise MotionkitError(
            f"{name} must be a whole number of sampling passes, 0 or 1 for off (2 or 3 steady text-to-video at that "
            f"many times the cost), got {passes!r}"
        )
    return passes


def set_free_init_passes(pipe, passes: int) -> None:
    """Sample with ``passes`` FreeInit passes on ``pipe`` (a ``MotionPipeline``), or one pass, FreeInit off, for 0
    or 1: what ``--free-init`` and a declared ``free_init`` mean, in one place."""
    if passes > 1:
        pipe.enable_free_init(num_iters=passes)
    else:
        pipe.disable_free_init()  # a reused pipeline keeps no earlier call's passes


@dataclass(frozen=True)
class FreeInit:
    iterations: int = 3
    filter: str = "butterworth"
    order: int = 4
    spatial_stop_frequency: float = 0.25
    temporal_stop_frequency: float = 0.25
    fast_sampling: bool = False

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise MotionkitError(f"FreeInit needs at least 1 iteration, got {self.iterations}")
        if self.filter not in FILTERS:
            raise MotionkitError(f"FreeInit filter {self.filter!r} is not one of {', '.join(FILTERS)}")
        for name in ("spatial_stop_frequency", "temporal_stop_frequency"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise MotionkitError(f"FreeInit {name} must lie in [0, 1], got {getattr(self, name)}")

    def steps(self, iteration: int, num_inference_steps: int) -> int:
        """Denoising steps of pass ``iteration`` (0-based): all of them unless ``fast_sampling``."""
        if not self.fast_sampling:
            return num_inference_steps
        return max(1, num_inference_steps * (iteration + 1) // self.iterations)

    def low_pass(self, frames: int, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        """``[frames, height, width]`` low-pass filter over centred (fftshift-ed) frequencies."""
        ds, dt = self.spatial_stop_frequency, self.temporal_stop_frequency
        if ds == 0 or dt == 0:
            return torch.zeros(frames, height, width, device=device)

        def axis(n: int) -> torch.Tensor:  # normalised frequency in [-1, 1) after fftshift
            return 2 * torch.arange(n, dtype=torch.float32, device=device) / n - 1

        t, h, w = torch.meshgrid(axis(frames) * (ds / dt), axis(height), axis(width), indexing="ij")
        d2 = t.square() + h.square() + w.square()  # squared distance, temporal axis rescaled to the spatial cutoff
        if self.filter == "butterworth":
            return 1 / (1 + (d2 / ds**2) ** self.order)
        if self.filter == "gaussian":
            return torch.exp(-d2 / (2 * ds**2))
        return (d2 <= ds**2).float()

    def reinitialise(
        self,
        denoised: torch.Tensor,
        initial_noise: torch.Tensor,
        scheduler,
        timestep: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        noise_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Starting latents for the next pass, from a pass's clean ``denoised`` latents ``[B, C, F, H, W]``.

        ``initial_noise`` is the first pass's unit noise; ``timestep`` the one the next pass starts at
        (the paper diffuses to the last training step, which is where text-to-video sampling starts);
        ``noise_prior`` shapes the fresh draw as the first pass's noise was shaped (None: left independent).
        """
        start = timestep.reshape(1).expand(denoised.shape[0]).to(denoised.device)
        diffused = scheduler.add_noise(denoised, initial_noise, start).float()
        fresh = randn_tensor(denoised.shape, generator=generator, device=denoised.device, dtype=torch.float32)
        if noise_prior is not None:
            fresh = noise_prior(fresh)
        # Sigma-parameterised schedulers (Euler, ...) start from noise scaled by init_noise_sigma.
        fresh = fresh * float(scheduler.init_noise_sigma)
        low = self.low_pass(*denoised.shape[-3:], device=denoised.device)
        dims = (-3, -2, -1)

        def spectrum(x: torch.Tensor) -> torch.Tensor:
            return fft.fftshift(fft.fftn(x, dim=dims), dim=dims)

        mixed = spectrum(diffused) * low + spectrum(fresh) * (1 - low)
        return fft.ifftn(fft.ifftshift(mixed, dim=dims), dim=dims).real.to(denoised.dtype)

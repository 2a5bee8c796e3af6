"""How familiar an image is to the image model, and the settings a models folder declares for unfamiliar ones.

A diffusion model predicts the noise added to images like the ones it learnt better than the noise added to
others, so its denoising error on an image is a measure of how far the image lies from its training data
(the idea behind diffusion-based out-of-distribution detection). ``denoising_error`` is that error at one
timestep, averaged over a few seeded noise draws: deterministic for an image and a model. It reads the image as
the VAE encodes it: detail the VAE cannot keep does not count (uniform pixel noise, which a small VAE smooths to a
near-flat latent, reads as familiar).

A small model family can animate its own world with one set of defaults and need another for pictures from
outside it (the tiny family repaints a photo into a scene of its world unless the photo's own inversion starts
every frame). A models folder's ``motionkit-app.json`` may declare both::

    "unfamiliar_images": {"denoising_error_above": 0.07, "image_inversion": 0.5, "guidance": 2.0}

An image whose denoising error exceeds the limit is animated with those settings, except the ones the user
set; the limit comes from the folder's own world (``examples/tiny_family/calibrate_familiarity.py``). Each base
model denoises its own world best, so the limit may be given per base, by its name in the folder's ``bases/``
(``{"tiny-base": 0.067, "tiny-personalized": 0.085}``); a base the mapping does not name gets no rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from motionkit.errors import MotionkitError, check_each
from motionkit.pipeline.inversion import NoisePredictor

DEFAULT_TIMESTEP = 500  # mid-schedule: low noise reads texture the VAE already lost, high noise reads little
DEFAULT_DRAWS = 4
DECLARED_KEY = "unfamiliar_images"
LIMIT_KEY = "denoising_error_above"
# Settings the rule may change, with their types: image-to-video's, and the guidance that goes with them.
RULE_SETTINGS: dict[str, tuple[type, ...]] = {
    "image_inversion": (int, float), "guidance": (int, float), "strength": (int, float), "image_guidance": (str,),
}


def denoising_error(
    predict_noise: NoisePredictor,
    latent: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    timestep: int = DEFAULT_TIMESTEP,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> float:
    """Mean squared error of ``predict_noise``'s noise prediction for ``latent`` (``[B, C, h, w]``, scaled as the
    UNet sees it) noised to ``timestep``, over ``draws`` noise draws from a generator seeded with ``seed``."""
    if draws < 1:
        raise MotionkitError(f"the denoising error needs at least one noise draw, got {draws}")
    if not 0 <= timestep < len(alphas_cumprod):
        raise MotionkitError(f"the denoising error's timestep must lie in [0, {len(alphas_cumprod) - 1}], got {timestep}")
    generator = torch.Generator("cpu").manual_seed(seed)
    alpha = alphas_cumprod[timestep].to(device=latent.device, dtype=torch.float32)
    clean = latent.to(torch.float32)
    errors = []
    for _ in range(draws):
        noise = torch.randn(clean.shape, generator=generator).to(clean.device)
        noisy = alpha.sqrt() * clean + (1.0 - alpha).sqrt() * noise
        predicted = predict_noise(noisy.to(latent.dtype), timestep).to(torch.float32)
        errors.append(float(((predicted - noise) ** 2).mean()))
    return sum(errors) / len(errors)


@dataclass(frozen=True)
class UnfamiliarImages:
    """A models folder's rule: images whose denoising error exceeds ``above`` are sampled with ``settings``."""

    above: float
    settings: dict[str, Any] = field(default_factory=dict)
    timestep: int = DEFAULT_TIMESTEP
    draws: int = DEFAULT_DRAWS

    def applies(self, error: float) -> bool:
        return error > self.above

    def measure(self, pipe: Any, image: Any, height: int, width: int) -> dict[str, Any]:
        """What the rule finds for ``image`` through ``pipe`` (a ``MotionPipeline``) at that size, as the video's
        record keeps it: the denoising error, the limit, and whether the rule applies."""
        error = pipe.image_denoising_error(image, height, width, self.timestep, self.draws)
        return {"denoising_error": error, "limit": self.above, "applied": self.applies(error)}

    def described(self) -> str:
        """Its settings in words: ``"image inversion 0.5, guidance 2"``."""
        return ", ".join(f"{k.replace('_', ' ')} {v:g}" if isinstance(v, (int, float)) else f"{k.replace('_', ' ')} {v}"
                         for k, v in self.settings.items())

    def without(self, given: set[str]) -> "UnfamiliarImages":
        """The rule without the settings in ``given`` (what the user chose stays the user's)."""
        return UnfamiliarImages(self.above, {k: v for k, v in self.settings.items() if k not in given}, self.timestep, self.draws)


def _positive(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _check_guidance(guidance: float) -> None:
    if guidance < 0:
        raise MotionkitError(f"guidance must be at least 0, got {guidance!r}")


def rule_limits(raw: Any, where: str) -> dict[str | None, float]:
    """The limits of a declaration's ``unfamiliar_images`` entry: ``{None: limit}`` for every base, or one per base
    name; one line naming the fault otherwise."""
    at = f"{where}: {DECLARED_KEY}"
    if not isinstance(raw, dict):
        raise MotionkitError(f"{at} must be an object like {{\"{LIMIT_KEY}\": 0.07, \"image_inversion\": 0.5}}")
    limit = raw.get(LIMIT_KEY)
    if _positive(limit):
        return {None: float(limit)}
    if isinstance(limit, dict) and limit and all(isinstance(k, str) and _positive(v) for k, v in limit.items()):
        return {name: float(value) for name, value in limit.items()}
    raise MotionkitError(
        f"{at} needs {LIMIT_KEY}, a positive number (the denoising error above which an image is unfamiliar) "
        "or an object of one per base name"
    )


def unfamiliar_images_rule(raw: Any, where: str, base: str | None = None) -> UnfamiliarImages | None:
    """The checked rule of a declaration's ``unfamiliar_images`` entry for the base named ``base`` (None when its
    limits name other bases only; ``base`` None: any base's, for checking), or one line naming the fault."""
    at = f"{where}: {DECLARED_KEY}"
    limits = rule_limits(raw, where)
    settings = {k: v for k, v in raw.items() if k != LIMIT_KEY}
    for key, value in settings.items():
        kinds = RULE_SETTINGS.get(key)
        if kinds is None:
            raise MotionkitError(f"{at}: unknown setting {key!r}; use {', '.join(sorted(RULE_SETTINGS))}")
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise MotionkitError(f"{at}: {key} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    if not settings:
        raise MotionkitError(f"{at} names no setting to change: add image_inversion, guidance, strength or image_guidance")
    from motionkit.pipeline.conditioning import check_image_guidance, check_strength
    from motionkit.pipeline.inversion import check_image_inversion

    check_each(settings, {"image_inversion": check_image_inversion, "image_guidance": check_image_guidance,
                          "strength": check_strength, "guidance": _check_guidance}, at)
    limit = limits.get(None, limits.get(base) if base is not None else next(iter(limits.values())))
    return UnfamiliarImages(limit, settings) if limit is not None else None

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

The error reads how busy an image is as much as how foreign, so a smooth photo can pass for a flat world ground.
A second signal reads its colours: the colour distance to the nearest frame of a palette of the world
(``motionkit.colour_reference``), a file in the models folder::

    "colour_distance_above": {"tiny-base": 0.6}, "palette": "world-palette.safetensors"

An image is unfamiliar when either signal is over its limit; each may be declared alone, and per base.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from motionkit.errors import MotionkitError, check_each
from motionkit.pipeline.inversion import NoisePredictor

DEFAULT_TIMESTEP = 500  # mid-schedule: low noise reads texture the VAE already lost, high noise reads little
DEFAULT_DRAWS = 4
DECLARED_KEY = "unfamiliar_images"
LIMIT_KEY = "denoising_error_above"
COLOUR_LIMIT_KEY = "colour_distance_above"
PALETTE_KEY = "palette"
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
    """A models folder's rule: images whose denoising error exceeds ``above``, or whose colour distance to the
    palette in ``palette`` (its histograms for ``palette_base``) exceeds ``colour_above``, are sampled with
    ``settings``. A limit that is None is not measured."""

    above: float | None
    settings: dict[str, Any] = field(default_factory=dict)
    timestep: int = DEFAULT_TIMESTEP
    draws: int = DEFAULT_DRAWS
    colour_above: float | None = None
    palette: Path | None = None
    palette_base: str | None = None

    def applies(self, error: float | None, colour: float | None = None) -> bool:
        over_error = self.above is not None and error is not None and error > self.above
        return over_error or (self.colour_above is not None and colour is not None and colour > self.colour_above)

    def measure(self, pipe: Any, image: Any, height: int, width: int) -> dict[str, Any]:
        """What the rule finds for ``image`` through ``pipe`` (a ``MotionPipeline``) at that size, as the video's
        record keeps it: each declared signal with its limit, whether the rule applies, and ``findings``."""
        error = colour = None
        if self.above is not None:
            error = pipe.image_denoising_error(image, height, width, self.timestep, self.draws)
        if self.colour_above is not None:
            from motionkit.colour_reference import colour_distance, read_palette
            from motionkit.pipeline.image_input import prepare_image

            pixels = prepare_image(image, height, width, pipe.image_processor)[0].permute(1, 2, 0).float()
            frame = ((pixels.numpy() + 1.0) * 127.5).round().clip(0, 255).astype("uint8")
            colour = colour_distance(frame, read_palette(self.palette, self.palette_base))
        measured = {"denoising_error": error, "limit": self.above, "colour_distance": colour,
                    "colour_limit": self.colour_above, "applied": self.applies(error, colour)}
        return {**measured, "findings": self.findings(measured)}

    def findings(self, measured: dict[str, Any]) -> str:
        """``measure``'s signals against their limits, in words: ``"denoising error 0.044 <= 0.067, colour
        distance 0.656 > 0.6"``."""
        words = []
        for name, value, limit in (("denoising error", measured.get("denoising_error"), self.above),
                                   ("colour distance", measured.get("colour_distance"), self.colour_above)):
            if value is not None and limit is not None:
                words.append(f"{name} {value:.3f} {'>' if value > limit else '<='} {limit:g}")
        return ", ".join(words)

    def described(self) -> str:
        """Its settings in words: ``"image inversion 0.5, guidance 2"``."""
        return ", ".join(f"{k.replace('_', ' ')} {v:g}" if isinstance(v, (int, float)) else f"{k.replace('_', ' ')} {v}"
                         for k, v in self.settings.items())

    def without(self, given: set[str]) -> "UnfamiliarImages":
        """The rule without the settings in ``given`` (what the user chose stays the user's)."""
        return replace(self, settings={k: v for k, v in self.settings.items() if k not in given})


def _positive(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _check_guidance(guidance: float) -> None:
    if guidance < 0:
        raise MotionkitError(f"guidance must be at least 0, got {guidance!r}")


def rule_limits(raw: Any, where: str, key: str = LIMIT_KEY) -> dict[str | None, float]:
    """The limits a declaration's ``unfamiliar_images`` entry gives under ``key`` (``denoising_error_above`` or
    ``colour_distance_above``): ``{None: limit}`` for every base, one per base name, or ``{}`` when it declares
    the other signal only; one line naming the fault otherwise."""
    at = f"{where}: {DECLARED_KEY}"
    if not isinstance(raw, dict):
        raise MotionkitError(f"{at} must be an object like {{\"{LIMIT_KEY}\": 0.07, \"image_inversion\": 0.5}}")
    if key not in raw and (key == COLOUR_LIMIT_KEY or COLOUR_LIMIT_KEY in raw):
        return {}
    colour = key == COLOUR_LIMIT_KEY

    def valid(value: Any) -> bool:  # a colour distance lies in 0..1, so a limit of 1 or more never applies
        return _positive(value) and (not colour or value < 1)

    limit = raw.get(key)
    if valid(limit):
        return {None: float(limit)}
    if isinstance(limit, dict) and limit and all(isinstance(k, str) and valid(v) for k, v in limit.items()):
        return {name: float(value) for name, value in limit.items()}
    what = ("a number in (0, 1) (the colour distance to the palette above which an image is unfamiliar)" if colour else
            "a positive number (the denoising error above which an image is unfamiliar)")
    raise MotionkitError(f"{at} needs {key}, {what} or an object of one per base name")


def _base_limit(limits: dict[str | None, float], base: str | None) -> float | None:
    """The limit for the base named ``base`` (``None``: any base's, for checking)."""
    if None in limits:
        return limits[None]
    return limits.get(base) if base is not None else next(iter(limits.values()), None)


def _palette_file(raw: dict[str, Any], at: str, folder: Path | None) -> Path:
    """The declared palette file, which must lie in the models folder ``folder``."""
    name = raw.get(PALETTE_KEY)
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise MotionkitError(f"{at}: {COLOUR_LIMIT_KEY} needs {PALETTE_KEY}, the palette file's path inside the models "
                             "folder, e.g. \"world-palette.safetensors\"")
    if folder is None:
        raise MotionkitError(f"{at}: {PALETTE_KEY} is a path in the models folder, and no folder was given to read it from")
    return Path(folder) / name


def unfamiliar_images_rule(
    raw: Any, where: str, base: str | None = None, folder: str | Path | None = None
) -> UnfamiliarImages | None:
    """The checked rule of a declaration's ``unfamiliar_images`` entry for the base named ``base`` (None when its
    limits name other bases only; ``base`` None: any base's, for checking), or one line naming the fault. A
    palette file is read from the models folder ``folder``, and checked to hold the histograms each base needs."""
    at = f"{where}: {DECLARED_KEY}"
    limits, colour_limits = rule_limits(raw, where), rule_limits(raw, where, COLOUR_LIMIT_KEY)
    settings = {k: v for k, v in raw.items() if k not in (LIMIT_KEY, COLOUR_LIMIT_KEY, PALETTE_KEY)}
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
    if PALETTE_KEY in raw and not colour_limits:
        raise MotionkitError(f"{at}: {PALETTE_KEY} is read for {COLOUR_LIMIT_KEY}, which is missing: add it or remove {PALETTE_KEY}")
    limit, colour_limit = _base_limit(limits, base), _base_limit(colour_limits, base)
    palette = _palette_file(raw, at, folder) if colour_limits else None
    if colour_limit is not None:
        from motionkit.colour_reference import read_palette

        for name in [base] if base is not None else list(colour_limits):
            read_palette(palette, name)  # a missing or broken file stops here, not at the first image
    if limit is None and colour_limit is None:
        return None
    return UnfamiliarImages(limit, settings, colour_above=colour_limit,
                            palette=palette if colour_limit is not None else None, palette_base=base)

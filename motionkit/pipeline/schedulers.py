"""Schedulers by name, with AnimateDiff's recommended noise schedule as the default.

SD 1.x/2.x motion adapters are trained on linear betas 0.00085-0.012 (not SD's scaled_linear), so
these settings override a base checkpoint's scheduler config; everything else (prediction type, number
of training timesteps, ...) is kept from it.

SDXL is the exception: AnimateDiff's SDXL motion module was trained and is sampled on the SDXL base's
own scaled_linear schedule (its inference config: scaled_linear 0.00085-0.020, the schedule motionkit's
shipped SDXL config carries). Forcing SD's linear 0.012 betas on it would sample a noise schedule the
module never saw, so for ``family="sdxl"`` the base's betas are kept and only the sampling settings
(``steps_offset``, ``clip_sample``) are applied.
"""

from __future__ import annotations

from typing import Any, Mapping

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from motionkit.errors import MotionkitError

ANIMATEDIFF_DEFAULTS: dict[str, Any] = {
    "beta_schedule": "linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "steps_offset": 1,
    "clip_sample": False,
}
_BETA_KEYS = ("beta_schedule", "beta_start", "beta_end", "trained_betas")
# AnimateDiff SDXL's inference schedule: the fallback when an SDXL base config names no betas.
ANIMATEDIFF_SDXL_BETAS: dict[str, Any] = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.020}

# name -> (class, settings that define the sampler beyond its class)
SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    # AnimateLCM: few-step sampling with an LCM-distilled adapter or LoRA.
    "lcm": (LCMScheduler, {}),
}


def make_scheduler(
    name: str, base_config: Mapping[str, Any] | None = None, family: str = "sd", **overrides: Any
) -> SchedulerMixin:
    """A diffusers scheduler by short name (``ddim``, ``euler``, ``euler_a``, ``dpmpp_2m``, ``lcm``).

    ``base_config`` is a scheduler config (e.g. ``pipe.scheduler.config``); AnimateDiff's defaults
    replace its noise schedule, and ``overrides`` win over both. ``family="sdxl"`` (``pipe.family``) keeps
    the base config's betas instead (AnimateDiff SDXL's scaled_linear 0.00085-0.020 when it names none).
    """
    key = name.lower().replace("-", "_").replace("+", "p")
    if key not in SCHEDULERS:
        raise MotionkitError(f"unknown scheduler {name!r}: choose one of {', '.join(SCHEDULERS)}")
    cls, settings = SCHEDULERS[key]
    defaults = ANIMATEDIFF_DEFAULTS
    base = dict(base_config or {})
    if family == "sdxl":
        defaults = {k: v for k, v in ANIMATEDIFF_DEFAULTS.items() if k not in _BETA_KEYS}
        base = {**ANIMATEDIFF_SDXL_BETAS, **base}
    chosen = {**defaults, **settings, **overrides}
    config = {**base, **chosen}
    # diffusers' from_config drops the keys a config lists as left at their defaults; the ones chosen here are not.
    if "_use_default_values" in config:
        config["_use_default_values"] = [k for k in config["_use_default_values"] if k not in chosen]
    # Keys a class does not take (clip_sample for Euler) are set aside by from_config, as when swapping schedulers.
    return cls.from_config(config)

"""Motion strength: how much the motion modules change the image model's features, for any adapter.

Every motion module adds a residual to the UNet features it follows; ``motion_strength`` scales that
residual (``x + s * (module(x) - x)``, in ``motionkit.injection``): 1.0 runs the adapter as trained, 0.0
skips the motion modules (each frame is the image model's alone), values in between damp the motion and
values above 1 exaggerate it. It is not PIA's ``motion_scale`` (a preset index of the image-conditioning
mask, adapters with an image branch only); the two combine. ``docs/motion_strength.md`` measures what a
value does to the motion score on the tiny family.
"""

from __future__ import annotations

import math

from motionkit.errors import MotionkitError

# Past this the residual is extrapolated so far that the features leave anything the UNet has seen.
MAX_MOTION_STRENGTH = 4.0


def check_motion_strength(value: float) -> float:
    """``value`` as a float, refused (one line) unless it is a finite number in ``[0, MAX_MOTION_STRENGTH]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise MotionkitError(f"motion_strength must be a number from 0 to {MAX_MOTION_STRENGTH:g}, got {value!r}")
    if not 0.0 <= float(value) <= MAX_MOTION_STRENGTH:
        raise MotionkitError(
            f"motion_strength {value} is outside 0-{MAX_MOTION_STRENGTH:g}: 1.0 is the adapter as trained, 0 the image model"
        )
    return float(value)

"""What one request may ask of the server, and the checks that refuse the rest.

Values arrive raw from the page or the API (the generate event skips Gradio's preprocessing), so every
number is type-checked here. Nothing is clamped: an over-limit request is refused with a message that
says what the server allows.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from motionkit.errors import MotionkitError

MIN_SIDE = 64  # 8 latent pixels: SD UNets downsample the latent three times
MAX_SEED = 2**32 - 1
MAX_GUIDANCE = 30.0
# Decoders with a long record of parser bugs (TIFF, PSD, EPS...) are not offered to the internet.
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")


@dataclass(frozen=True)
class Limits:
    """Per-request ceilings, set when the server starts."""

    max_frames: int = 32
    max_size: int = 768
    max_steps: int = 50
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096

    def __post_init__(self) -> None:
        if self.max_frames < 1 or self.max_steps < 1:
            raise MotionkitError("--max-frames and --max-steps must be at least 1")
        if self.max_upload_bytes < 1 or self.max_image_pixels < 1:
            raise MotionkitError("the upload limits (--max-upload-mb, pixels) must be positive")
        if self.max_size < MIN_SIDE:
            raise MotionkitError(f"--max-size must be at least {MIN_SIDE} pixels, got {self.max_size}")


@dataclass(frozen=True)
class Request:
    """One generation's settings, checked against ``Limits``."""

    frames: int
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    motion_scale: int
    context_length: int | None


def _number(value: Any, what: str) -> float:
    # bool is an int in Python but never a meaningful number of frames.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MotionkitError(f"{what} must be a number, got {str(value)[:40]!r}")
    return float(value)


def _whole(value: Any, what: str) -> int:
    number = _number(value, what)
    if number != int(number):
        raise MotionkitError(f"{what} must be a whole number, got {value}")
    return int(number)


def _within(value: int, what: str, low: int, high: int, flag: str | None = None) -> int:
    if value < low:
        raise MotionkitError(f"{what} must be at least {low}, got {value}")
    if value > high:
        why = f" (the server runs with {flag} {high})" if flag else ""
        raise MotionkitError(f"{what} {value} is over this server's limit of {high}{why}: ask for at most {high}")
    return value


def check_request(limits: Limits, **raw: Any) -> Request:
    """Type- and range-check ``frames, width, height, steps, guidance, seed, motion_scale, context_length``."""
    frames = _within(_whole(raw["frames"], "frames"), "frames", 1, limits.max_frames, "--max-frames")
    sides = {}
    for side in ("width", "height"):
        value = _within(_whole(raw[side], side), side, MIN_SIDE, limits.max_size, "--max-size")
        if value % 8:
            raise MotionkitError(f"{side} must be a multiple of 8, got {value}: use {value // 8 * 8}")
        sides[side] = value
    steps = _within(_whole(raw["steps"], "steps"), "steps", 1, limits.max_steps, "--max-steps")
    guidance = _number(raw["guidance"], "guidance")
    if not 0.0 <= guidance <= MAX_GUIDANCE:
        raise MotionkitError(f"guidance must lie in 0..{MAX_GUIDANCE:g}, got {guidance:g}")
    seed = _within(_whole(raw["seed"], "seed"), "seed", 0, MAX_SEED)
    motion_scale = _within(_whole(raw["motion_scale"], "motion scale"), "motion scale", 0, 8)
    context = _whole(raw["context_length"], "context length")
    if context < 0 or context > frames:
        raise MotionkitError(f"context length must lie in 0..{frames} (0: all frames at once), got {context}")
    return Request(frames, sides["width"], sides["height"], steps, guidance, seed, motion_scale, context or None)


def check_scale(value: Any, what: str) -> float:
    """A LoRA scale: a number in -2..2 (0 switches the LoRA off)."""
    scale = _number(value, what)
    if not -2.0 <= scale <= 2.0:
        raise MotionkitError(f"{what} must lie in -2..2, got {scale:g}")
    return scale


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def open_upload(path: str | Path, limits: Limits) -> Image.Image:
    """The uploaded conditioning image as RGB, after checking its byte size, format and pixel count.

    The pixel count is read from the header and checked before anything is decoded, so a small file that
    expands to gigabytes (a decompression bomb) is refused without being expanded.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise MotionkitError(
            f"the image is {_mb(size)}; this server takes images up to {_mb(limits.max_upload_bytes)}: upload a smaller one"
        )
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; here any bomb warning is a refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=UPLOAD_FORMATS) as image:
                width, height = image.size
                if width * height > limits.max_image_pixels:
                    raise MotionkitError(
                        f"the image is {width}x{height} pixels; this server takes at most "
                        f"{limits.max_image_pixels / 1e6:.1f} megapixels: downscale it"
                    )
                image.load()
                return image.convert("RGB")
    except MotionkitError:
        raise
    except UnidentifiedImageError:
        raise MotionkitError(
            f"the upload is not an image this server reads: upload a {', '.join(UPLOAD_FORMATS[:-1])} or {UPLOAD_FORMATS[-1]} file"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MotionkitError("the image has too many pixels for this server: downscale it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MotionkitError(f"the image is damaged or truncated ({reason[:80]}): upload it again or re-save it") from None

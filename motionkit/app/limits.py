"""What one request may ask of the server, and the checks that refuse the rest.

Values arrive raw from the page or the API (the generate event skips Gradio's preprocessing), so every
number is type-checked here. Nothing is clamped: an over-limit request is refused with a message that
says what the server allows. Besides per-setting ceilings, a cost budget (frames x pixels x steps) bounds
how long one request may hold the sampler; its default depends on the device.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from motionkit.errors import MAX_ECHO, MotionkitError, echo  # noqa: F401  (echo: shared with the library)

MIN_SIDE = 64  # 8 latent pixels: SD UNets downsample the latent three times
MAX_SEED = 2**32 - 1
MAX_GUIDANCE = 30.0
# Decoders with a long record of parser bugs (TIFF, PSD, EPS...) are not offered to the internet.
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
VIDEO_UPLOAD_SUFFIXES = (".mp4", ".gif", ".webp")


# Per-device ceilings: (frames, side in px, steps, cost). Cost is frames x width x height x steps in
# millions ("frame-megapixel-steps"); it bounds how long one request may hold the sampler.
# CPU: 16 is about 16 frames of 200x200 at 25 steps, a few minutes with the tiny family on a laptop core;
# GPU: 1000 covers 32 frames of 768x768 at 50 steps (about a minute of SD 1.5 on a current GPU).
DEVICE_LIMITS: dict[str, tuple[int, int, int, float]] = {
    "cpu": (32, 512, 50, 16.0),
    "cuda": (64, 1024, 100, 1000.0),
}
MAX_FPS = 60.0
MAX_FREE_INIT = 4  # each FreeInit pass is a whole sampling run: past 4 a request costs more than it steadies
MIN_STRENGTH = 0.05  # below it hardly a step runs: the video is the image
OFFLOAD_OFF = "off"  # the form's "no offload"


@dataclass(frozen=True)
class Limits:
    """Per-request ceilings, set when the server starts (``Limits.for_device`` picks them by device)."""

    max_frames: int = 32
    max_size: int = 512
    max_steps: int = 50
    max_cost: float = 16.0
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.max_frames < 1 or self.max_steps < 1:
            raise MotionkitError("--max-frames and --max-steps must be at least 1")
        if self.max_upload_bytes < 1 or self.max_image_pixels < 1:
            raise MotionkitError("the upload limits (--max-upload-mb, pixels) must be positive")
        if self.max_size < MIN_SIDE:
            raise MotionkitError(f"--max-size must be at least {MIN_SIDE} pixels, got {self.max_size}")
        if not self.max_cost > 0:
            raise MotionkitError(f"--max-cost must be positive, got {self.max_cost}")

    @classmethod
    def for_device(cls, device: str, **overrides: Any) -> "Limits":
        """The ceilings for ``device`` (``cpu`` or ``cuda``); ``overrides`` that are not None replace them."""
        frames, size, steps, cost = DEVICE_LIMITS["cuda" if str(device).startswith("cuda") else "cpu"]
        values = dict(max_frames=frames, max_size=size, max_steps=steps, max_cost=cost, device=str(device))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def cost(frames: int, width: int, height: int, steps: int) -> float:
    """A request's sampling cost in frame-megapixel-steps (what ``Limits.max_cost`` bounds)."""
    return frames * width * height * steps / 1e6


def check_cost(limits: Limits, frames: int, width: int, height: int, steps: int, passes: int = 1) -> None:
    """Refuse, in one line, a request over the server's cost; ``passes`` FreeInit sampling passes multiply it."""
    asked = cost(frames, width, height, steps * passes)
    if asked > limits.max_cost:
        runs = f" x {passes} FreeInit passes" if passes > 1 else ""
        lower = "the frames, the size, the steps or the FreeInit passes" if passes > 1 else "the frames, the size or the steps"
        raise MotionkitError(
            f"this request costs {asked:.1f} frame-megapixel-steps ({frames} frames x {width}x{height} px x {steps} steps{runs}); "
            f"this server allows {limits.max_cost:g} on {limits.device} (--max-cost): lower {lower}"
        )


@dataclass(frozen=True)
class Settings:
    """One generation's checked settings: everything that shapes the video except the prompt and models."""

    frames: int
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    strength: float
    anchor_first_frame: bool
    motion_scale: int
    image_guidance: str
    context_length: int | None
    context_loop: bool
    fps: float
    # Motion strength (any adapter), FreeNoise for long videos, and the memory options.
    motion_strength: float = 1.0
    image_inversion: float = 0.0
    # Image-to-video: the models folder's settings for an image unlike its world, when it declares them.
    unfamiliar_images: bool = False
    noise_correlation: float = 0.0
    frame_noise_means: str = "drawn"
    free_init: int = 0  # FreeInit's passes, text-to-video's: 0 or 1 one pass
    free_noise: bool = False
    free_noise_length: int | None = None  # None: the adapter's position table
    free_noise_stride: int = 4
    offload: str | None = None
    vae_slicing: bool = False
    vae_tiling: bool = False
    decode_chunk: int = 16


def _number(value: Any, what: str) -> float:
    # bool is an int in Python but never a meaningful number of frames.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MotionkitError(f"{what} must be a number, got {echo(value)}")
    return float(value)


def _whole(value: Any, what: str) -> int:
    number = _number(value, what)
    if number != int(number):
        raise MotionkitError(f"{what} must be a whole number, got {echo(value)}")
    return int(number)


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise MotionkitError(f"{what} must be true or false, got {echo(value)}")
    return value


def _within(value: int, what: str, low: int, high: int, flag: str | None = None) -> int:
    if value < low:
        raise MotionkitError(f"{what} must be at least {low}, got {value}")
    if value > high:
        why = f" (the server runs with {flag} {high})" if flag else ""
        raise MotionkitError(f"{what} {value} is over this server's limit of {high}{why}: ask for at most {high}")
    return value


def _side(value: Any, what: str, limits: Limits) -> int:
    side = _within(_whole(value, what), what, MIN_SIDE, limits.max_size, "--max-size")
    if side % 8:
        lower, upper = side // 8 * 8, side // 8 * 8 + 8
        choices = f"{lower} or {upper}" if MIN_SIDE <= lower and upper <= limits.max_size else str(max(lower, MIN_SIDE))
        raise MotionkitError(f"{what} must be a multiple of 8, got {side}: use {choices}")
    return side


def draw_seed() -> int:
    """A fresh seed for one run, from the operating system's randomness (never shared between visitors)."""
    return random.SystemRandom().randrange(MAX_SEED + 1)


def check_settings(limits: Limits, raw: Mapping[str, Any]) -> Settings:
    """Type-, range- and cost-check the raw settings of one request (see ``Settings``; plus ``random_seed``).

    ``random_seed`` true draws a fresh seed for this run and ignores ``seed``.
    """
    frames = _within(_whole(raw["frames"], "frames"), "frames", 1, limits.max_frames, "--max-frames")
    width, height = _side(raw["width"], "width", limits), _side(raw["height"], "height", limits)
    steps = _within(_whole(raw["steps"], "steps"), "steps", 1, limits.max_steps, "--max-steps")
    check_cost(limits, frames, width, height, steps)
    guidance = _number(raw["guidance"], "guidance")
    if not 0.0 <= guidance <= MAX_GUIDANCE:
        raise MotionkitError(f"guidance must lie in 0..{MAX_GUIDANCE:g}, got {guidance:g}")
    if _flag(raw["random_seed"], "random seed"):
        seed = draw_seed()
    else:
        seed = _within(_whole(raw["seed"], "seed"), "seed", 0, MAX_SEED)
    strength = _number(raw["strength"], "strength")
    if not MIN_STRENGTH <= strength <= 1.0:
        raise MotionkitError(
            f"strength must lie in {MIN_STRENGTH:g}..1 (lower keeps the image; 1 runs the whole schedule), got {strength:g}"
        )
    motion_scale = _within(_whole(raw["motion_scale"], "motion scale"), "motion scale", 0, 8)
    from motionkit.pipeline.conditioning import IMAGE_GUIDANCE

    image_guidance = raw["image_guidance"]
    if image_guidance not in IMAGE_GUIDANCE:
        raise MotionkitError(
            f"image guidance must be one of {', '.join(IMAGE_GUIDANCE)} (svd also guides towards the image), got {echo(image_guidance)}"
        )
    image_inversion = _number(raw["image_inversion"], "image inversion")
    if not 0.0 <= image_inversion <= 1.0:
        raise MotionkitError(
            f"image inversion must lie in 0..1 (the share of each frame's starting noise from the image's inversion; 0 off), "
            f"got {image_inversion:g}"
        )
    context = _whole(raw["context_length"], "context length")
    if context < 0 or context > frames:
        raise MotionkitError(f"context length must lie in 0..{frames} (0: all frames at once), got {context}")
    fps = _number(raw["fps"], "fps")
    if not 0.0 < fps <= MAX_FPS:
        raise MotionkitError(f"fps must lie in (0, {MAX_FPS:g}], got {fps:g}")
    from motionkit.pipeline.motion_strength import MAX_MOTION_STRENGTH

    motion_strength = _number(raw["motion_strength"], "motion strength")
    if not 0.0 <= motion_strength <= MAX_MOTION_STRENGTH:
        raise MotionkitError(
            f"motion strength must lie in 0..{MAX_MOTION_STRENGTH:g} (1 as the adapter was trained, 0 no motion), got {motion_strength:g}"
        )
    noise_correlation = _number(raw["noise_correlation"], "noise correlation")
    if not 0.0 <= noise_correlation < 1.0:
        raise MotionkitError(
            f"noise correlation must lie in 0..1, below 1 (0 independent frames, higher frames that agree on one scene), got {noise_correlation:g}"
        )
    from motionkit.noise_prior import FRAME_NOISE_MEANS

    frame_noise_means = raw["frame_noise_means"]
    if frame_noise_means not in FRAME_NOISE_MEANS:
        raise MotionkitError(
            f"frame noise means must be one of {', '.join(FRAME_NOISE_MEANS)} (shared: one brightness for every frame), "
            f"got {echo(frame_noise_means)}"
        )
    free_init = _within(_whole(raw["free_init"], "FreeInit passes"), "FreeInit passes", 0, MAX_FREE_INIT)
    free_noise = _flag(raw["free_noise"], "FreeNoise")
    window = _within(_whole(raw["free_noise_length"], "FreeNoise window"), "FreeNoise window", 0, limits.max_frames, "--max-frames")
    stride = _whole(raw["free_noise_stride"], "FreeNoise stride")
    if free_noise and not 1 <= stride <= (window or stride):
        raise MotionkitError(
            f"FreeNoise stride must lie in 1..{window or 'the window'} "
            f"(frames between windows; further apart leaves frames out), got {stride}"
        )
    decode_chunk = _within(_whole(raw["decode_chunk"], "decode chunk"), "decode chunk", 1, limits.max_frames, "--max-frames")
    return Settings(
        frames=frames, width=width, height=height, steps=steps, guidance=guidance, seed=seed, strength=strength,
        anchor_first_frame=_flag(raw["anchor_first_frame"], "anchor first frame"), motion_scale=motion_scale,
        image_guidance=image_guidance, context_length=context or None, context_loop=_flag(raw["context_loop"], "loop"), fps=fps,
        motion_strength=motion_strength, image_inversion=image_inversion,
        unfamiliar_images=_flag(raw["unfamiliar_images"], "photo settings for unfamiliar images"), noise_correlation=noise_correlation,
        frame_noise_means=frame_noise_means, free_init=free_init, free_noise=free_noise, free_noise_length=window or None,
        free_noise_stride=stride, offload=check_offload_choice(raw["offload"], limits),
        vae_slicing=_flag(raw["vae_slicing"], "VAE slicing"), vae_tiling=_flag(raw["vae_tiling"], "VAE tiling"),
        decode_chunk=decode_chunk,
    )


def offload_note(device: str) -> str | None:
    """Why offload cannot act on ``device`` (None where it can: CUDA)."""
    if str(device).startswith("cuda"):
        return None
    return (
        f"offload moves models between main memory and a CUDA GPU, and this server runs on {device}, "
        "where every model already sits in main memory"
    )


def check_offload_choice(value: Any, limits: Limits) -> str | None:
    """The form's offload choice (``"off"``, ``"model"`` or ``"sequential"``) as an offload mode or None."""
    from motionkit.pipeline.memory import OFFLOAD_MODES

    if value == OFFLOAD_OFF:
        return None
    if not isinstance(value, str) or value not in OFFLOAD_MODES:
        raise MotionkitError(f"unknown offload {echo(value)}: choose {OFFLOAD_OFF}, {' or '.join(OFFLOAD_MODES)}")
    why = offload_note(limits.device)
    if why:
        raise MotionkitError(f"offload {value} was asked for, but {why}: set Offload to {OFFLOAD_OFF}")
    return value


def check_scale(value: Any, what: str) -> float:
    """A LoRA's or control model's scale: a number in -2..2 (0 switches it off)."""
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
    _upload_size(path, "image", limits)
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
        raise MotionkitError(
            f"the image has too many pixels for this server (at most {limits.max_image_pixels / 1e6:.1f} megapixels): downscale it"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MotionkitError(f"the image is damaged or truncated ({reason[:80]}): upload it again or re-save it") from None


def _upload_size(path: Path, what: str, limits: Limits) -> None:
    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise MotionkitError(
            f"the {what} is {_mb(size)}; this server takes uploads up to {_mb(limits.max_upload_bytes)}: upload a smaller one"
        )


def open_video_upload(path: str | Path, limits: Limits, frames: int) -> Any:
    """An uploaded control video as uint8 ``[frames, H, W, 3]``, after checking its byte size, format, frame
    size and frame count.

    The frame size is read from the header before decoding (as for images), and decoding stops one frame
    past ``frames``. A video of another length is refused rather than trimmed or repeated: a control video
    shapes every frame, so a silently shifted one would move the wrong frames.
    """
    from motionkit.video_io import read_video

    video = _decoded_video(Path(path), "control video", limits, lambda p: read_video(p, max_frames=frames + 1))
    if len(video) != frames:
        count = f"{len(video)}" if len(video) < frames else f"more than {frames}"
        raise MotionkitError(
            f"the control video has {count} frames but the video to make has {frames}: "
            f"upload a control video of exactly {frames} frames (one per output frame), or set Frames to its length"
        )
    return video


def _decoded_video(path: Path, what: str, limits: Limits, decode: Any) -> Any:
    """``decode(path)`` of an uploaded video, after checking its suffix, byte size and frame size (from its header)."""
    from motionkit.video_io import probe_video

    if path.suffix.lower() not in VIDEO_UPLOAD_SUFFIXES:
        raise MotionkitError(
            f"the {what} is not a video this server reads: upload an {', '.join(s[1:] for s in VIDEO_UPLOAD_SUFFIXES[:-1])} "
            f"or {VIDEO_UPLOAD_SUFFIXES[-1][1:]} file"
        )
    _upload_size(path, what, limits)
    try:
        info = probe_video(path)
        if info.width * info.height > limits.max_image_pixels:
            raise MotionkitError(
                f"the {what} is {info.width}x{info.height} pixels a frame; this server takes at most "
                f"{limits.max_image_pixels / 1e6:.1f} megapixels: downscale it"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return decode(path)
    except MotionkitError as err:
        if str(path) not in str(err):
            raise
        # The upload's server-side path means nothing to the visitor: name the upload instead.
        raise MotionkitError(str(err).replace(str(path), f"the {what}").replace("--video-frames", "the range")) from None
    except Exception as err:  # decoders raise their own kinds for damaged files
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MotionkitError(f"the {what} is damaged or truncated ({reason[:80]}): upload it again or re-encode it") from None


def parse_source_range(value: Any) -> tuple[int, int | None]:
    """The form's source frame range ``START:END`` (END exclusive; empty: the whole clip)."""
    from motionkit.pipeline.video_input import parse_frame_range

    if value is None or value == "":
        return 0, None
    if not isinstance(value, str) or len(value) > 40:
        raise MotionkitError(f"bad source frame range {echo(value)}: give START:END source frame indices, e.g. 0:48 or 24:")
    try:
        return parse_frame_range(value)
    except MotionkitError as err:
        if "--video-frames" in str(err):  # the command line's wording: say it in the page's terms
            raise MotionkitError(f"bad source frame range {echo(value)}: give START:END source frame indices, e.g. 0:48 or 24:") from None
        raise


def open_source_video(path: str | Path, limits: Limits, frames: int, fps: float, frame_range: tuple[int, int | None]) -> Any:
    """An uploaded video-to-video source as a ``SourceVideo`` of exactly ``frames`` frames picked at ``fps`` from
    ``frame_range``, checked as control videos are; decoding stops once ``frames`` are kept. A clip that gives fewer
    is refused with the count it gives (its frames are what the video restyles, so none are made up)."""
    from motionkit.pipeline.video_input import read_source_video

    start, end = frame_range
    clip = _decoded_video(
        Path(path), "source video", limits,
        lambda p: read_source_video(p, fps=fps, start=start, end=end, max_frames=frames),
    )
    if len(clip) < frames:
        span = f"{start}:{'' if end is None else end}"
        raise MotionkitError(
            f"the source video gives {len(clip)} frames at {fps:g} fps in the range {span}, fewer than Frames ({frames}): "
            f"set Frames to at most {len(clip)}, widen the range, or upload a longer clip"
        )
    return clip

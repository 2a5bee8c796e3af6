"""``motionkit animate``: a video from a base checkpoint, a motion adapter, a prompt and optionally an image.

One video from flags, or a batch from YAML (``--config BATCH.yaml``, AnimateDiff-style: shared base,
adapter and settings, then a list of prompts with their own seeds, images and negative prompts; one
file per prompt in an output folder). Control: ControlNets with control videos or a SparseCtrl model with
keyframes (``motionkit.pipeline.control_plan``; the same keys in a batch file, shared by its prompts). Every
input is checked before any model loads, and every video is written atomically with a sidecar JSON that
records how it was made.

Settings the user gives neither by flag nor in the batch file default to what the models say
(``motionkit.model_defaults``), as the app's page does: first the declaration ``DIR/motionkit-app.json`` of
the models folder the base lies in (``DIR/bases/NAME``), then the frames the adapter records it was trained
on, then ``DEFAULTS``. One line says which defaults came from where.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motionkit.errors import MotionkitError
from motionkit.noise_prior import FRAME_NOISE_MEANS, default_frame_noise_means

# Re-exported: the commands build pipelines with these library helpers.
from motionkit.pipeline.build import DTYPES, assemble_pipeline, device_and_dtype, quiet_loading  # noqa: F401

BACKENDS = ("auto", "sdpa", "math", "xformers", "triton")
VIDEO_SUFFIXES = ("mp4", "gif", "webp", "png")
MIN_SIDE = 64  # 8 latent pixels: SD UNets downsample the latent three times
# Ceilings a request must stay under unless --no-limits is given: beyond them one typo runs for hours
# or exhausts memory. Steps cannot exceed the schedulers' 1000 training timesteps at all.
MAX_FRAMES = 1024
MAX_SIDE = 2048
MAX_STEPS = 1000
SEED_RANGE = 2**64  # torch generators take seeds in [0, 2**64)
# What a models folder's declaration may fill here (its about and examples are the app's).
DECLARED_KEYS = (
    "frames", "steps", "guidance", "scheduler", "strength", "anchor_first_frame", "image_guidance", "image_inversion",
    "noise_correlation", "frame_noise_means", "free_init", "fps", "negative_prompt",
)
# Declared settings that only one kind of job takes: strength, anchoring and image guidance image-to-video's (text-to-video refuses
# a strength below 1, video-to-video keeps its own); the noise correlation text-to-video's (an image already ties
# the frames together, and frames 1..N-1 sharing noise that frame 0 does not would jump away from it together), and
# so is the frames' noise mean (an image sets the frames' colour itself), and FreeInit (a second pass from an image
# drifts further from it); the image's inversion needs an image.
ONLY_FOR_KIND = {
    "image": ("strength", "anchor_first_frame", "image_guidance", "image_inversion"),
    "text": ("noise_correlation", "frame_noise_means", "free_init"),
}

# Settings with their defaults; None means "decided later" (the base model's native size, the device's dtype).
DEFAULTS: dict[str, Any] = {
    "frames": 16,
    "width": None,
    "height": None,
    "steps": 25,
    "guidance": 7.5,
    "scheduler": "ddim",
    "strength": 1.0,
    # None: the pipeline's choice (an adapter trained on clean first frames always reads frame 0 as the image).
    "anchor_first_frame": None,
    "motion_scale": None,
    "noise_aug": 0.0,
    "image_guidance": "pia",
    # None: the pipeline's choice ("zero" from an image, "drawn" otherwise).
    "frame_noise_means": None,
    "context_length": None,
    "context_overlap": 4,
    "context_stride": 1,
    "context_loop": False,
    "fps": 8.0,
    "video_fps": None,
    "video_frames": None,
    "device": None,
    "dtype": None,
    "attention_backend": "auto",
    "offload": None,
    "vae_slicing": False,
    "vae_tiling": False,
    "decode_chunk": 16,
    "negative_prompt": None,
    "seed": None,
    "no_limits": False,
    # Prompt travel, FreeNoise, motion strength, few-step presets (motionkit.pipeline.prompt_schedule, free_noise,
    # motion_strength, few_step).
    "prompt_interpolation": "linear",
    "free_noise": False,
    "free_noise_length": None,
    "free_noise_stride": 4,
    "free_noise_weighting": "pyramid",
    "free_noise_noise": "shuffle_context",
    "motion_strength": 1.0,
    # Correlation of the starting noise between frames (motionkit.noise_prior): 0 is independent, as diffusers.
    "noise_correlation": 0.0,
    # FreeInit's sampling passes (motionkit.pipeline.free_init): 0 or 1 is one pass, off.
    "free_init": 0,
    "image_inversion": 0.0,
    "preset": None,
    # Step caching (motionkit.pipeline.step_cache): None is off, exact sampling.
    "cache_interval": None,
}
# Prompt forms other than --prompt TEXT: schedules by frame.
SCHEDULE_KEYS = ("prompt_at", "prompt_schedule", "negative_at", "negative_schedule")
# What the base/adapter loading needs, shared by every prompt of a batch.
MODEL_KEYS = ("base", "adapter", "base_config", "tokenizer", "lora", "motion_lora", "device", "dtype", "attention_backend", "scheduler",
              "preset", "offload", "vae_slicing", "vae_tiling")
# Memory switches (motionkit.pipeline.memory): the pipeline's, shared by every prompt of a batch.
MEMORY_KEYS = ("offload", "vae_slicing", "vae_tiling")
# Control models and their inputs (motionkit.pipeline.control_plan), shared by every prompt of a batch.
CONTROL_KEYS = ("controlnet", "control_video", "control_start", "control_end", "sparsectrl", "keyframe")
# The IP-Adapter and its reference images (motionkit.pipeline.ip_adapter_plan), shared by every prompt of a batch.
IP_KEYS = ("ip_adapter", "ip_encoder", "ip_image", "ip_scale")
# What a single prompt of a batch may set for itself.
PROMPT_KEYS = {
    "prompt", "negative_prompt", "seed", "image", "out", "frames", "width", "height", "steps", "guidance",
    "strength", "anchor_first_frame", "motion_scale", "noise_aug", "image_guidance", "frame_noise_means", "context_length", "context_overlap", "context_stride", "context_loop", "fps",
    "video", "video_fps", "video_frames", "decode_chunk",
    "prompt_interpolation", "free_noise", "free_noise_length", "free_noise_stride", "free_noise_weighting", "free_noise_noise",
    "motion_strength", "noise_correlation", "free_init", "image_inversion", "cache_interval", *SCHEDULE_KEYS,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "animate",
        help="animate a base checkpoint with a motion adapter (text- or image-to-video)",
        description="Generate a video from a base image model (diffusers folder or single .safetensors/.ckpt) and a "
        "motion adapter, from a prompt and optionally a first frame. Offline. --config BATCH.yaml runs a batch.",
    )
    add = parser.add_argument
    add("--config", help="YAML batch: shared settings plus a list of prompts (flags given here override it)")
    add("--base", help="base model: a diffusers pipeline folder or a single .safetensors/.ckpt checkpoint")
    add("--adapter", help="motion adapter file or folder (AnimateDiff, diffusers or motionkit)")
    add("--image", help="first frame to animate (image-to-video)")
    add("--video", help="source video to restyle (video-to-video): a video file or a folder of frames; --strength sets how far")
    add("--video-fps", type=float, help="video-to-video: the source's frame rate, when the file carries none or a wrong one")
    add("--video-frames", metavar="START:END", help="video-to-video: source frames to use, END exclusive (e.g. 0:48, 24:)")
    add("--prompt", help="what the video shows")
    add("--negative-prompt", help="what to steer away from")
    add("--prompt-at", action="append", metavar="KEY[@WEIGHT]:PROMPT", help="prompt travel: the prompt from frame KEY on (16, -1 from the end, 0.5 or 50%% of the way); repeat, keys increasing. Write --prompt-at=-1:TEXT for negative keys")
    add("--prompt-schedule", metavar="'KEY: PROMPT | ...'", help="prompt travel in one string, e.g. '0: a cat | 50%%: a dog | -1@1.2: a bird'")
    add("--negative-at", action="append", metavar="KEY[@WEIGHT]:PROMPT", help="a negative prompt from frame KEY on; repeat")
    add("--negative-schedule", metavar="'KEY: PROMPT | ...'", help="negative prompts by frame in one string")
    add("--prompt-interpolation", choices=("linear", "slerp"), help="how embeddings travel between keys (default linear)")
    add("--free-noise", action="store_true", default=None, help="FreeNoise for long videos: rescheduled noise, windowed motion modules")
    add("--free-noise-length", type=int, help="FreeNoise window in frames (default: the adapter's position table)")
    add("--free-noise-stride", type=int, help="frames between FreeNoise windows (default 4)")
    add("--free-noise-weighting", choices=("flat", "pyramid", "delayed_reverse_sawtooth"), help="how FreeNoise blends windows (default pyramid)")
    add("--free-noise-noise", choices=("shuffle_context", "repeat_context", "random"), help="FreeNoise noise rescheduling (default shuffle_context)")
    add("--motion-strength", type=float, help="scale on the motion modules' output, any adapter: 1.0 as trained (default), 0 the image model, 0.5 calmer, 1.5 livelier")
    add("--noise-correlation", type=float, help="correlation of the starting noise between frames, in [0, 1): frames that agree "
        "on one scene from the first step (default: the models folder's motionkit-app.json, else 0, independent)")
    add("--free-init", type=int, metavar="N", help="FreeInit: sample N passes, each from the last one's low frequencies "
        "(steadier frames at N times the cost; default: the models folder's motionkit-app.json for text-to-video, else off)")
    add("--preset", choices=("animatelcm", "lightning-1", "lightning-2", "lightning-4", "lightning-8"), help="few-step sampling for AnimateLCM / AnimateDiff-Lightning modules: sets scheduler, steps and guidance (flags given win)")
    add("--cache-interval", type=_int_or_text, metavar="N", help="step caching: the whole UNet every Nth step, only its shallowest layers in between (faster, close to exact; default off)")
    add("--frames", type=int, help="number of frames (default: the models folder's motionkit-app.json, else the adapter's training frames, else 16)")
    add("--width", type=int, help="width in pixels, a multiple of 8 (default: the base model's native size)")
    add("--height", type=int, help="height in pixels, a multiple of 8 (default: the base model's native size)")
    add("--steps", type=int, help="denoising steps (default: the models folder's motionkit-app.json, else 25)")
    add("--guidance", type=float, help="classifier-free guidance scale (default: the models folder's motionkit-app.json, else 7.5)")
    add("--seed", type=int, help="random seed (default: a fresh one, recorded in the sidecar JSON)")
    add("--scheduler", help="ddim (default, unless the models folder's motionkit-app.json names one), euler, euler_a, dpmpp_2m or lcm")
    add("--anchor-first-frame", action=argparse.BooleanOptionalAction, default=None,
        help="image-to-video: keep frame 0 the image itself at every step (default: the models folder's motionkit-app.json, else off)")
    add("--strength", type=float, help="image-to-video: fraction of the schedule run from the noised image (default: the models folder's motionkit-app.json, else 1.0)")
    add("--motion-scale", type=int, help="image-to-video with a conditioning adapter: motion preset 0-8")
    add("--frame-noise-means", choices=FRAME_NOISE_MEANS,
        help="each frame's spatial noise mean: drawn (as diffusers), shared (frame 0's: one brightness for every frame) "
        "or zero (the image's mean colour); default: zero from an image, else the models folder's motionkit-app.json, else drawn")
    add("--image-inversion", type=float, metavar="SHARE",
        help="image-to-video: share (0-1) of each frame's starting noise taken from the image's DDIM inversion, which "
        "keeps the image's layout in every frame (default: the models folder's motionkit-app.json, else 0, off)")
    add("--noise-aug", type=float, help="image-to-video: noise added to the conditioning latent (default 0)")
    add(
        "--image-guidance", choices=("pia", "svd"),
        help="image-to-video: pia (default) gives the image to both guidance branches; svd gives the "
        "unconditional branch none and ramps guidance over frames",
    )
    add("--context-length", type=int, help="frames per context window (long videos)")
    add("--context-overlap", type=int, help="frames shared by neighbouring windows (default 4)")
    add("--context-stride", type=int, help="dilation levels of the context windows (default 1)")
    add("--context-loop", action="store_true", default=None, help="wrap windows around: a looping video")
    add("--lora", action="append", metavar="PATH[:SCALE]", help="image LoRA on the base model; repeat for several")
    add(
        "--motion-lora", action="append", metavar="PATH[:SCALE]",
        help="MotionLoRA on the adapter's temporal attention (e.g. a camera move); repeat to stack several",
    )
    add("--controlnet", action="append", metavar="PATH[:SCALE]", help="ControlNet folder; repeat for several, each with a --control-video")
    add("--control-video", action="append", metavar="FILE|DIR", help="control video (depth, pose, ...) of one --controlnet, in order: a video file or a folder of frames, one frame per output frame")
    add("--control-start", action="append", type=float, metavar="FRACTION", help="fraction of the schedule where control starts: one value, or one per --controlnet (default 0)")
    add("--control-end", action="append", type=float, metavar="FRACTION", help="fraction of the schedule where control ends: one value, or one per --controlnet (default 1)")
    add("--sparsectrl", metavar="PATH[:SCALE]", help="SparseCtrl folder (RGB or scribble), conditioned on --keyframe images")
    add("--keyframe", action="append", metavar="INDEX:IMAGE", help="SparseCtrl keyframe: frame index and image; repeat for several. Negative indices count from the end: write --keyframe=-1:last.png")
    add("--ip-adapter", metavar="PATH[:SCALE]", help="IP-Adapter file (h94 layout, .safetensors or .bin): an image prompt from --ip-image")
    add("--ip-encoder", metavar="DIR", help="the IP-Adapter's CLIP image encoder folder (default: image_encoder/ beside the file)")
    add("--ip-image", action="append", metavar="[FRAME:]IMAGE", help="IP-Adapter reference image; repeat as FRAME:IMAGE to change it over frames")
    add("--ip-scale", action="append", metavar="FRAME:SCALE", help="IP-Adapter scale at a frame, linear in between; repeat to ramp it")
    add("--base-config", help="diffusers-format config folder for a single-file base (overrides the shipped configs)")
    add("--tokenizer", help="CLIP tokenizer folder (single-file bases carry none)")
    add("--device", choices=("cpu", "cuda", "mps"), help="default: cuda when available (mps: Apple silicon, where torch has it)")
    add("--offload", choices=("model", "sequential"), help="keep models in main memory and move them to the GPU as they run: model (fast) or sequential (least GPU memory, slow)")
    add("--vae-slicing", action="store_true", default=None, help="decode one frame at a time inside each chunk")
    add("--vae-tiling", action="store_true", default=None, help="encode and decode in overlapping tiles (large sizes)")
    add("--decode-chunk", type=int, metavar="N", help="frames the VAE encodes or decodes at once (default 16; lower uses less memory)")
    add("--dtype", choices=DTYPES, help="default: fp16 on cuda, fp32 on cpu")
    add("--fps", type=float, help="frames per second of the written video (default: the models folder's motionkit-app.json, else 8)")
    add("--attention-backend", choices=BACKENDS, help="temporal attention kernel (default auto)")
    add(
        "--no-limits", action="store_true", default=None,
        help=f"allow more than {MAX_FRAMES} frames or sides over {MAX_SIDE} px (slow, memory-hungry)",
    )
    add("--out", help="output: OUT.mp4, .gif, .webp, or a frame folder DIR/ (a batch: an output folder)")
    parser.set_defaults(func=run)


# --------------------------------------------------------------------------------------------- jobs


@dataclass
class Job:
    """One video to make: its prompt, where it goes, and its settings (defaults filled in)."""

    prompt: Any  # text, or a motionkit.pipeline.prompt_schedule.PromptSchedule
    out: Path
    settings: dict[str, Any]
    image: Path | None = None
    video: Any = None  # a motionkit.pipeline.video_input.SourceVideo for video-to-video
    negative: Any = None  # a negative PromptSchedule, when given by frame
    # The models folder's settings for an image unlike its world, less what the user set (image jobs only).
    unfamiliar: Any = None  # a motionkit.pipeline.image_familiarity.UnfamiliarImages, or None
    familiarity: dict[str, Any] | None = None  # what the check measured and did, once rendered


@dataclass
class Plan:
    base: Path
    adapter: Path
    base_config: Path | None
    tokenizer: Path | None
    loras: list[tuple[str, float]]
    model: dict[str, Any]
    motion_loras: list[tuple[str, float]] = field(default_factory=list)
    control: Any = None  # a motionkit.pipeline.control_plan.ControlPlan, or None
    ip_adapter: Any = None  # a motionkit.pipeline.ip_adapter_plan.IPAdapterPlan, or None
    jobs: list[Job] = field(default_factory=list)
    defaults_note: str | None = None  # which defaults came from the models, and from where


def _int_or_text(value: str) -> int | str:
    """A whole number, or the text as given, so that the settings check refuses it in one line (argparse would print its usage)."""
    try:
        return int(value)
    except ValueError:
        return value


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The options set on the command line (None means not given)."""
    skip = {"func", "command", "version", "config"}
    return {k: v for k, v in vars(args).items() if k not in skip and v is not None}


def _existing(path: Any, what: str, flag: str, *, file: bool = False) -> Path:
    from motionkit.utils.paths import missing_path_error

    if path is None or str(path) == "":
        raise MotionkitError(f"no {what} given: pass {flag}")
    path = Path(path)
    if not path.exists():
        raise missing_path_error(path, what, flag)
    if file and path.is_dir():
        raise MotionkitError(f"{path}: is a folder, not a {what}; give {flag} the file itself")
    return path


def _check_out(out: Path, flag: str = "--out") -> None:
    from motionkit.video_io import WRITE_FORMATS, resolve_target

    try:
        resolve_target(out)
    except MotionkitError:
        raise MotionkitError(f"{out}: cannot write '{out.suffix}' videos; give {flag} one of {', '.join(WRITE_FORMATS)}") from None
    if out.suffix and out.is_dir():
        raise MotionkitError(
            f"{out}: is a folder, but a {out.suffix} video is a file; give {flag} another name, or remove the folder"
        )


def _check_settings(s: dict[str, Any], where: str = "") -> None:
    """Cheap checks that need no model, so a typo fails in a second, not after loading weights."""
    at = f"{where}: " if where else ""
    if not isinstance(s["frames"], int) or s["frames"] < 1:
        raise MotionkitError(f"{at}--frames must be at least 1, got {s['frames']}")
    if not isinstance(s["steps"], int) or s["steps"] < 1:
        raise MotionkitError(f"{at}--steps must be at least 1, got {s['steps']}")
    if s["steps"] > MAX_STEPS:
        raise MotionkitError(f"{at}--steps {s['steps']} is more than the schedule's {MAX_STEPS} timesteps: use at most {MAX_STEPS} (25-50 is typical)")
    if s["seed"] is not None and (not isinstance(s["seed"], int) or not 0 <= s["seed"] < SEED_RANGE):
        raise MotionkitError(f"{at}--seed must be a whole number from 0 to 2**64 - 1, got {str(s['seed'])[:40]}")
    if s["video_fps"] is not None and not (isinstance(s["video_fps"], (int, float)) and float(s["video_fps"]) > 0):
        raise MotionkitError(f"{at}--video-fps must be a positive number, got {s['video_fps']}")
    for key in ("guidance", "strength", "noise_aug", "fps"):
        if not isinstance(s[key], (int, float)) or not math.isfinite(float(s[key])):
            raise MotionkitError(f"{at}{_flag(key)} must be a finite number, got {s[key]}")
    for side in ("width", "height"):
        value = s[side]
        if value is None:
            continue
        if not isinstance(value, int) or value % 8:
            raise MotionkitError(f"{at}--{side} must be a multiple of 8, got {value}: use {max(MIN_SIDE, int(value) // 8 * 8)}")
        if value < MIN_SIDE:
            raise MotionkitError(f"{at}--{side} {value} is too small: use at least {MIN_SIDE} pixels")
    from motionkit.pipeline.conditioning import check_strength

    check_strength(s["strength"], name=f"{at}--strength")
    if s["motion_scale"] is not None and not 0 <= int(s["motion_scale"]) <= 8:
        raise MotionkitError(f"{at}--motion-scale must be a preset from 0 to 8, got {s['motion_scale']}")
    if float(s["noise_aug"]) < 0:
        raise MotionkitError(f"{at}--noise-aug must be >= 0, got {s['noise_aug']}")
    if s["image_guidance"] not in ("pia", "svd"):
        raise MotionkitError(f"{at}--image-guidance must be pia or svd, got {s['image_guidance']!r}")
    if s["context_length"] is not None and int(s["context_length"]) < 1:
        raise MotionkitError(f"{at}--context-length must be at least 1, got {s['context_length']}")
    if int(s["context_overlap"]) < 0 or int(s["context_stride"]) < 1:
        raise MotionkitError(f"{at}--context-overlap must be >= 0 and --context-stride >= 1")
    if not isinstance(s["decode_chunk"], int) or s["decode_chunk"] < 1:
        raise MotionkitError(f"{at}--decode-chunk must be a whole number of at least 1, got {s['decode_chunk']}")
    if float(s["fps"]) <= 0:
        raise MotionkitError(f"{at}--fps must be positive, got {s['fps']}")
    _check_travel(s, at)
    if not s["no_limits"]:
        _check_ceilings(s, at)


def _check_travel(s: dict[str, Any], at: str) -> None:
    from motionkit.noise_prior import check_frame_noise_means, check_noise_correlation
    from motionkit.pipeline.free_init import check_free_init
    from motionkit.pipeline.free_noise import FreeNoise
    from motionkit.pipeline.inversion import check_image_inversion
    from motionkit.pipeline.motion_strength import check_motion_strength
    from motionkit.pipeline.prompt_schedule import INTERPOLATIONS
    from motionkit.pipeline.step_cache import check_step_cache

    try:
        check_motion_strength(s["motion_strength"])
        check_noise_correlation(s["noise_correlation"], name="--noise-correlation")
        check_image_inversion(s["image_inversion"], name="--image-inversion")
        if s["frame_noise_means"] is not None:
            check_frame_noise_means(s["frame_noise_means"], name="--frame-noise-means")
        check_step_cache(s["cache_interval"], name="--cache-interval")
        check_free_init(s["free_init"], name="--free-init")
        if s["prompt_interpolation"] not in INTERPOLATIONS:
            raise MotionkitError(f"--prompt-interpolation must be one of {', '.join(INTERPOLATIONS)}, got {s['prompt_interpolation']!r}")
        if s["free_noise"]:
            FreeNoise(s["free_noise_length"] or 16, s["free_noise_stride"], s["free_noise_weighting"], s["free_noise_noise"])
    except MotionkitError as err:
        raise MotionkitError(f"{at}{err}") from None


def _check_ceilings(s: dict[str, Any], at: str) -> None:
    """Refuse requests past the ceilings, naming what they would cost."""
    width, height = s["width"] or MIN_SIDE, s["height"] or MIN_SIDE
    gib = s["frames"] * width * height * 3 * 4 / 2**30  # the decoded float32 frames, before any model memory
    cost = f"the decoded frames alone take {gib:.1f} GiB, and sampling runs {s['steps']} UNet passes over every frame"
    if s["frames"] > MAX_FRAMES:
        raise MotionkitError(f"{at}--frames {s['frames']} is over the limit of {MAX_FRAMES} ({cost}): lower --frames or pass --no-limits")
    for side in ("width", "height"):
        if s[side] is not None and s[side] > MAX_SIDE:
            raise MotionkitError(f"{at}--{side} {s[side]} is over the limit of {MAX_SIDE} px ({cost}): lower it or pass --no-limits")


def _check_scheduler(name: str) -> None:
    from motionkit.pipeline.schedulers import SCHEDULERS

    key = str(name).lower().replace("-", "_").replace("+", "p")
    if key not in SCHEDULERS:
        raise MotionkitError(f"unknown scheduler {name!r}: choose one of {', '.join(SCHEDULERS)}")


def _loras(specs: Any, flag: str = "--lora") -> list[tuple[str, float]]:
    from motionkit.pipeline.lora import parse_lora_spec

    loras = []
    for spec in specs or []:
        if isinstance(spec, dict) and "path" in spec:
            path, scale = str(spec["path"]), float(spec.get("scale", 1.0))
        elif isinstance(spec, str):
            path, scale = parse_lora_spec(spec)
        else:
            raise MotionkitError(f"bad LoRA entry {spec!r}: give PATH, PATH:SCALE or {{path: ..., scale: ...}}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such LoRA file; check {flag}")
        loras.append((path, scale))
    return loras


def _plan(given: dict[str, Any], prompts: list[dict[str, Any]], out: Path, batch: bool) -> Plan:
    from motionkit.pipeline.control_plan import control_plan
    from motionkit.pipeline.few_step import preset_settings
    from motionkit.pipeline.ip_adapter_plan import ip_adapter_plan
    from motionkit.pipeline.memory import check_device, check_offload
    from motionkit.pipeline.prompt_schedule import prompt_from_options

    base = _existing(given.get("base"), "base model", "--base")
    adapter = _existing(given.get("adapter"), "motion adapter", "--adapter")
    from motionkit.model_defaults import models_folder_of, read_declaration

    root = models_folder_of(base)
    declaration = read_declaration(root) if root is not None else None
    sources = _model_defaults(declaration, base, adapter, given)
    unfamiliar = _unfamiliar_rule(declaration, base)
    filled = {k: v for _, values in sources for k, v in values.items()}
    kind_only = {kind: {k: filled.pop(k) for k in keys if k in filled} for kind, keys in ONLY_FOR_KIND.items()}
    settings = {**DEFAULTS, **filled, **{k: v for k, v in given.items() if k in DEFAULTS}}
    if settings["preset"] is not None:
        chosen = preset_settings(settings["preset"], given)
        settings.update(chosen)
        if unfamiliar is not None:
            unfamiliar = unfamiliar.without(set(chosen))  # a few-step preset's guidance is part of the preset
        sources = [(where, {k: v for k, v in values.items() if k not in chosen}) for where, values in sources]
    _check_scheduler(settings["scheduler"])
    check_offload(settings["offload"], check_device(settings["device"]))
    plan = Plan(
        base=base,
        adapter=adapter,
        base_config=_existing(given["base_config"], "config folder", "--base-config") if given.get("base_config") else None,
        tokenizer=_existing(given["tokenizer"], "tokenizer folder", "--tokenizer") if given.get("tokenizer") else None,
        loras=_loras(given.get("lora")),
        motion_loras=_loras(given.get("motion_lora"), "--motion-lora"),
        model={k: settings[k] for k in ("device", "dtype", "attention_backend", "scheduler", "preset", *MEMORY_KEYS)},
        control=control_plan(**{k: given.get(k) for k in CONTROL_KEYS}),
        ip_adapter=ip_adapter_plan(**{k: given.get(k) for k in IP_KEYS}),
    )
    kinds_used = set()
    for index, entry in enumerate(prompts):
        where = f"prompt {index + 1}" if batch else ""
        job_settings = {**settings, **{k: v for k, v in entry.items() if k in DEFAULTS}}
        kind = "image" if entry.get("image") else "video" if entry.get("video") else "text"
        if kind_only.get(kind):
            job_settings.update({k: v for k, v in kind_only[kind].items() if k not in entry})
            kinds_used.add(kind)
        _check_settings(job_settings, where)
        video = _source_video(entry, job_settings, "frames" in given or "frames" in entry, where)
        if video is not None:
            _check_settings(job_settings, where)  # the clip's length is the frame count now
        if plan.control is not None:
            plan.control.check_frames(job_settings["frames"], where)
        if plan.ip_adapter is not None:
            plan.ip_adapter.check_frames(job_settings["frames"], where)
        at = f"{where}: " if where else ""
        try:
            prompt = prompt_from_options(entry.get("prompt"), entry.get("prompt_at"), entry.get("prompt_schedule"))
            negative = prompt_from_options(None, entry.get("negative_at"), entry.get("negative_schedule"), "negative prompt")
            negative = negative or prompt_from_options(job_settings["negative_prompt"], what="negative prompt")
            for schedule in (prompt, negative):
                if schedule is not None and not isinstance(schedule, str):
                    schedule.frames(job_settings["frames"])  # malformed keys fail now, not after loading
        except MotionkitError as err:
            raise MotionkitError(f"{at}{err}") from None
        if isinstance(negative, str):
            job_settings["negative_prompt"], negative = negative, None
        elif negative is not None:
            job_settings["negative_prompt"] = None
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            raise MotionkitError(f"{where}: empty prompt; give it some text" if batch else "no prompt given: pass --prompt TEXT (or --prompt-at KEY:TEXT)")
        image = _existing(entry["image"], "image", "--image", file=True) if entry.get("image") else None
        if image is not None:
            from motionkit.pipeline.image_input import load_image

            load_image(image)  # an unreadable or oversized image fails now, not after the models load
        if batch:
            text = prompt if isinstance(prompt, str) else prompt.prompts[0]
            target = out / (entry.get("out") or f"{index + 1:03d}-{_slug(text)}.{given.get('format', 'mp4')}")
        else:
            target = out
        _check_out(target)
        if job_settings["seed"] is None:
            job_settings["seed"] = random.SystemRandom().randrange(2**31)
        if image is not None and video is not None:
            raise MotionkitError(f"{where + ': ' if where else ''}--image and --video do not mix: give one (image- or video-to-video)")
        rule = unfamiliar.without(set(given) | set(entry)) if unfamiliar is not None and image is not None else None
        plan.jobs.append(Job(prompt=prompt, out=target, settings=job_settings, image=image, video=video, negative=negative,
                             unfamiliar=rule if rule is not None and rule.settings else None))
    unused = {k for kind, keys in ONLY_FOR_KIND.items() if kind not in kinds_used for k in keys}
    sources = [(where, {k: v for k, v in values.items() if k not in unused}) for where, values in sources]
    plan.defaults_note = _defaults_note(sources)
    return plan


def _model_defaults(declaration: Any, base: Path, adapter: Path, given: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The settings the models give that the user did not, by source, first source first (each key once):
    ``declaration`` (the base's models folder's, or None) with the base's own settings in it, then the adapter's
    training length."""
    from motionkit.model_defaults import BASES_KEY, DECLARATION, adapter_config, recorded_training_frames
    from motionkit.models_folder import entry_name

    taken = set(given)
    if "negative_at" in given or "negative_schedule" in given:
        taken.add("negative_prompt")  # a negative prompt by frame is a negative prompt given
    sources = []
    if declaration is not None:
        name = entry_name(base)
        settings = declaration.for_base(name)
        declared = {k: settings[k] for k in DECLARED_KEYS if k in settings and k not in taken}
        if declared.get("negative_prompt") == "":
            del declared["negative_prompt"]  # no negative prompt: what the default already is
        own = f" (with {name}'s own)" if name in declaration.settings.get(BASES_KEY, {}) else ""
        sources.append((f"defaults from {DECLARATION} beside the base{own}", declared))
        taken |= set(declared)
    if "frames" not in taken:
        frames = recorded_training_frames(adapter_config(adapter))
        if frames is not None:
            sources.append(("defaults from the adapter's training length", {"frames": frames}))
    return sources


def _unfamiliar_rule(declaration: Any, base: Path) -> Any:
    """The ``unfamiliar_images`` rule of ``declaration`` (the base's models folder's, or None) for that base (None
    when there is none)."""
    from motionkit.models_folder import entry_name
    from motionkit.pipeline.image_familiarity import DECLARED_KEY, unfamiliar_images_rule

    if declaration is None or DECLARED_KEY not in declaration.settings:
        return None
    name = entry_name(base)
    return unfamiliar_images_rule(declaration.settings[DECLARED_KEY], str(declaration.path), name, declaration.path.parent)


def _check_familiarity(pipe: Any, job: Job) -> None:
    """Measure how unfamiliar the job's image is to the image model and, past the declared limit, take the
    declaration's settings for unfamiliar images (those the user did not set); one line says which."""
    from motionkit.model_defaults import DECLARATION
    from motionkit.pipeline.image_familiarity import DECLARED_KEY

    rule, s = job.unfamiliar, job.settings
    job.familiarity = rule.measure(pipe, str(job.image), s["height"], s["width"])
    found = job.familiarity["findings"]
    if not job.familiarity["applied"]:
        print(f"the image is like the models' world ({found}): their defaults")
        return
    s.update(rule.settings)
    flags = " or ".join(f"--{k.replace('_', '-')}" for k in rule.settings)
    print(f"the image is unlike the models' world ({found}): {rule.described()}, "
          f"from {DECLARED_KEY} in {DECLARATION}; give {flags} to choose yourself")


def _defaults_note(sources: list[tuple[str, dict[str, Any]]]) -> str | None:
    """One line: which defaults came from where (None when every setting was given or is a fixed default)."""
    words = {
        "frames": "{} frames", "steps": "{} steps", "guidance": "guidance {:g}", "scheduler": "scheduler {}",
        "strength": "strength {:g}", "anchor_first_frame": "anchor first frame {}", "image_guidance": "image guidance {}",
        "image_inversion": "image inversion {:g}",
        "noise_correlation": "noise correlation {:g}", "frame_noise_means": "frame noise means {}",
        "free_init": "FreeInit {} passes", "fps": "{:g} fps", "negative_prompt": "negative prompt {!r}",
    }
    parts = [f"{where}: " + ", ".join(words[k].format(v) for k, v in values.items()) for where, values in sources if values]
    return "; ".join(parts) or None


def _source_video(entry: dict[str, Any], s: dict[str, Any], frames_given: bool, where: str) -> Any:
    """The source clip of a video-to-video job, read now so a bad file or range fails before models load;
    its length becomes the job's frame count."""
    from motionkit.pipeline.video_input import source_video_from_settings

    if not entry.get("video"):
        if s["video_fps"] is not None or s["video_frames"] is not None:
            raise MotionkitError(f"{where + ': ' if where else ''}--video-fps and --video-frames need a source video: pass --video")
        return None
    limit = None if s["no_limits"] else MAX_FRAMES + 1  # one past the ceiling is enough to refuse
    clip = source_video_from_settings(
        entry["video"], float(s["fps"]), s["video_fps"], s["video_frames"], s["frames"] if frames_given else None, limit
    )
    s["frames"] = len(clip)
    return clip


def _slug(text: str, length: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:length].rstrip("-") or "video"


# --------------------------------------------------------------------------------------------- YAML batch


def _batch(path: Path, given: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """Shared settings (command-line flags win), prompt entries and the output folder of a batch file.

    Accepts ``prompts: [text | {prompt, seed, image, negative_prompt, out, ...}]`` and AnimateDiff's
    ``prompt: [...]`` / ``n_prompt: [...]`` / ``seed: [...]`` lists. Relative paths are relative to the file.
    """
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise MotionkitError(f"{path}: not valid YAML{at}; fix the batch file") from None
    if not isinstance(data, dict):
        raise MotionkitError(f"{path}: a batch file is a mapping of settings with a 'prompts' list")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    root = path.parent

    def resolve(value: Any) -> Any:
        return str(root / value) if isinstance(value, str) and value and not Path(value).is_absolute() else value

    prompts = data.pop("prompts", None)
    if prompts is None and isinstance(data.get("prompt"), list):  # AnimateDiff's parallel lists
        texts = data.pop("prompt")
        negatives, seeds = data.pop("n_prompt", None), data.get("seed")
        prompts = []
        for i, text in enumerate(texts):
            entry: dict[str, Any] = {"prompt": text}
            if isinstance(negatives, list) and negatives:
                entry["negative_prompt"] = negatives[i % len(negatives)]
            if isinstance(seeds, list) and seeds:
                entry["seed"] = seeds[i % len(seeds)]
            prompts.append(entry)
        if isinstance(negatives, str):
            data["negative_prompt"] = negatives
        if isinstance(seeds, list):
            data.pop("seed")
    if not isinstance(prompts, list) or not prompts:
        raise MotionkitError(f"{path}: no prompts: add a 'prompts:' list (text, or mappings with a 'prompt' key)")
    entries = []
    for i, item in enumerate(prompts):
        entry = {"prompt": item} if isinstance(item, str) else item
        if not isinstance(entry, dict):
            raise MotionkitError(f"{path}: prompt {i + 1} must be text or a mapping with a 'prompt' key")
        entry = {str(k).replace("-", "_"): v for k, v in entry.items()}
        unknown = sorted(set(entry) - PROMPT_KEYS)
        if unknown:
            raise MotionkitError(f"{path}: prompt {i + 1} has unknown key {unknown[0]!r}: use {', '.join(sorted(PROMPT_KEYS))}")
        for key in ("image", "video"):
            if entry.get(key):
                entry[key] = resolve(entry[key])
        entries.append(entry)

    known = set(DEFAULTS) | set(MODEL_KEYS) | set(CONTROL_KEYS) | set(IP_KEYS) | {"out", "output_dir", "format"}
    data.pop("n_prompt", None)
    unknown = sorted(set(data) - known)
    if unknown:
        raise MotionkitError(f"{path}: unknown setting {unknown[0]!r}: use {', '.join(sorted(known))}")
    for key in ("base", "adapter", "base_config", "tokenizer", "ip_encoder"):
        if key in data:
            data[key] = resolve(data[key])
    for key in ("control_video", "keyframe", "ip_image"):
        if data.get(key) is not None:
            data[key] = [resolve(v) if key == "control_video" else _resolve_keyframe(v, resolve) for v in _listed(data[key])]
    for key in ("lora", "motion_lora", "controlnet", "sparsectrl", "ip_adapter"):
        loras = data.get(key)
        if loras is not None:
            loras = loras if isinstance(loras, list) else [loras]
            data[key] = [
                {**spec, "path": resolve(spec["path"])} if isinstance(spec, dict) and "path" in spec
                else (resolve(spec) if isinstance(spec, str) else spec)
                for spec in loras
            ]
    fmt = str(data.get("format", "mp4")).lstrip(".").lower()
    if fmt not in VIDEO_SUFFIXES:
        raise MotionkitError(f"{path}: format {fmt!r} cannot be written; use one of {', '.join(VIDEO_SUFFIXES)}")
    data["format"] = fmt
    out = given.get("out") or data.get("out") or data.get("output_dir")
    if not out:
        raise MotionkitError(f"{path}: no output folder: set 'out:' in the batch file or pass --out DIR")
    out = Path(given["out"]) if given.get("out") else Path(resolve(str(out)))
    if out.suffix.lower() in (".mp4", ".gif", ".webp") or out.is_file():
        raise MotionkitError(f"{out}: a batch writes one file per prompt into a folder; give --out a folder path")
    for key in ("seed", "negative_prompt"):  # shared defaults a prompt may override
        for entry in entries:
            if key in data and key not in entry:
                entry[key] = data[key]
    shared = {k: v for k, v in data.items() if k not in ("out", "output_dir")}
    return {**shared, **given}, entries, out


# --------------------------------------------------------------------------------------------- running


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resolve_keyframe(spec: Any, resolve: Any) -> Any:
    """A batch file's keyframe (``INDEX:IMAGE``, ``{index, image}`` or a bare ``IMAGE``) with its image relative
    to the file."""
    if isinstance(spec, dict) and "image" in spec:
        return {**spec, "image": resolve(str(spec["image"]))}
    if isinstance(spec, str) and re.match(r"^-?\d+:", spec):
        index, image = spec.split(":", 1)
        return f"{index}:{resolve(image)}"
    return resolve(spec) if isinstance(spec, str) else spec


def build_pipeline(plan: Plan) -> Any:
    """Base model + adapter (checked to fit) + scheduler + LoRAs, on the chosen device and dtype."""
    from motionkit.formats import apply_motion_lora
    from motionkit.pipeline.loading import load_adapter_for, load_base
    from motionkit.pipeline.lora import apply_loras

    from motionkit.pipeline.memory import apply_memory_options

    device, dtype = device_and_dtype(plan.model["device"], plan.model["dtype"])
    offload = plan.model["offload"]
    if offload is not None:
        device = "cpu"  # offloaded models live in main memory; the hooks move them to the GPU as they run
    with quiet_loading():
        components = load_base(plan.base, config=plan.base_config, tokenizer=plan.tokenizer, dtype=dtype, device=device)
        adapter = load_adapter_for(components, plan.adapter)
        controlnet = plan.control.load_model(device, dtype) if plan.control is not None else None
    for index, (path, scale) in enumerate(plan.motion_loras):
        apply_motion_lora(adapter, path, scale=scale, name=f"motion_lora_{index}")
    pipe = assemble_pipeline(components, adapter, plan.model["scheduler"], plan.model["attention_backend"], controlnet)
    if plan.model.get("preset"):
        from motionkit.pipeline.few_step import apply_preset, get_preset, missing_lora

        preset = get_preset(plan.model["preset"])
        if plan.model["scheduler"] == preset.scheduler:  # not replaced by an explicit --scheduler
            apply_preset(pipe, preset)
        warning = missing_lora(preset, [path for path, _ in plan.loras])
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    if plan.loras:
        apply_loras(pipe, plan.loras)
    if plan.ip_adapter is not None:
        with quiet_loading():
            plan.ip_adapter.load(pipe)
    apply_memory_options(
        pipe, offload, plan.model["device"], bool(plan.model["vae_slicing"]), bool(plan.model["vae_tiling"])
    )
    return pipe


def _metadata(plan: Plan, job: Job) -> dict[str, Any]:
    from motionkit import __version__

    s = job.settings
    travel = {}
    if not isinstance(job.prompt, str):
        travel["prompt_schedule"] = job.prompt.to_list(s["frames"])
    if job.negative is not None:
        travel["negative_prompt_schedule"] = job.negative.to_list(s["frames"])
    return {
        "generator": f"motionkit {__version__} animate",
        "motionkit_version": __version__,
        "prompt": job.prompt if isinstance(job.prompt, str) else str(job.prompt),
        **travel,
        "negative_prompt": s["negative_prompt"] if job.negative is None else str(job.negative),
        "seed": s["seed"],
        "image": str(job.image) if job.image else None,
        "video": job.video.to_dict() if job.video is not None else None,
        "base": str(plan.base),
        "base_config": str(plan.base_config) if plan.base_config else None,
        "adapter": str(plan.adapter),
        "loras": [{"path": path, "scale": scale} for path, scale in plan.loras],
        "motion_loras": [{"path": path, "scale": scale} for path, scale in plan.motion_loras],
        "control": plan.control.to_dict() if plan.control is not None else None,
        "ip_adapter": plan.ip_adapter.to_dict() if plan.ip_adapter is not None else None,
        "settings": {k: s[k] for k in DEFAULTS if k not in ("negative_prompt", "seed")},
        "image_familiarity": job.familiarity,
    }


def _render(pipe: Any, plan: Plan, job: Job) -> Path:
    import torch

    from motionkit.pipeline.free_init import set_free_init_passes
    from motionkit.video_io import write_video

    s = job.settings
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    s["width"], s["height"] = s["width"] or size, s["height"] or size
    s["device"], s["dtype"] = str(pipe._execution_device), str(pipe.unet.dtype).replace("torch.", "")
    s["frame_noise_means"] = default_frame_noise_means(s["frame_noise_means"], conditioned=job.image is not None)
    if job.unfamiliar is not None:
        _check_familiarity(pipe, job)
    if s["free_noise"]:
        pipe.enable_free_noise(s["free_noise_length"], s["free_noise_stride"], s["free_noise_weighting"], s["free_noise_noise"])
    else:
        pipe.disable_free_noise()
    set_free_init_passes(pipe, s["free_init"])
    output = pipe(
        prompt=job.prompt,
        negative_prompt=s["negative_prompt"] if job.negative is None else job.negative,
        prompt_interpolation=s["prompt_interpolation"],
        motion_strength=s["motion_strength"],
        noise_correlation=s["noise_correlation"],
        cache_interval=s["cache_interval"],
        image=str(job.image) if job.image else None,
        video=job.video,
        num_frames=s["frames"],
        height=s["height"],
        width=s["width"],
        num_inference_steps=s["steps"],
        guidance_scale=s["guidance"],
        generator=torch.Generator("cpu").manual_seed(int(s["seed"])),
        strength=s["strength"],
        anchor_first_frame=s["anchor_first_frame"] if job.image else None,
        noise_aug_strength=s["noise_aug"],
        motion_scale=s["motion_scale"],
        image_guidance=s["image_guidance"],
        frame_noise_means=s["frame_noise_means"],
        image_inversion=s["image_inversion"],
        context_length=s["context_length"],
        context_overlap=s["context_overlap"],
        context_stride=s["context_stride"],
        context_loop=bool(s["context_loop"]),
        output_type="np",
        decode_chunk_size=s["decode_chunk"],
        **(plan.control.call_kwargs() if plan.control is not None else {}),
        **(plan.ip_adapter.call_kwargs() if plan.ip_adapter is not None else {}),
    )
    return write_video(output.frames[0], job.out, fps=s["fps"], metadata=_metadata(plan, job))


def run(args: argparse.Namespace) -> int:
    given = _given(args)
    if args.config:
        config = _existing(args.config, "batch file", "--config", file=True)
        merged, entries, out = _batch(config, given)
        plan = _plan(merged, entries, out, batch=True)
    else:
        if not given.get("out"):
            raise MotionkitError("no output given: pass --out OUT.mp4 (or .gif, .webp, DIR/)")
        entry = {k: given[k] for k in ("prompt", "image", "video", *SCHEDULE_KEYS) if k in given}
        plan = _plan(given, [entry], Path(given["out"]), batch=False)
    if plan.defaults_note:
        print(plan.defaults_note)
    pipe = build_pipeline(plan)
    for job in plan.jobs:
        written = _render(pipe, plan, job)
        print(f"wrote {written} ({job.settings['frames']} frames, seed {job.settings['seed']})")
    return 0

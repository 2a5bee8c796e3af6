"""``motionkit animate``: a video from a base checkpoint, a motion adapter, a prompt and optionally an image.

One video from flags, or a batch from YAML (``--config BATCH.yaml``, AnimateDiff-style: shared base,
adapter and settings, then a list of prompts with their own seeds, images and negative prompts; one
file per prompt in an output folder). Every input is checked before any model loads, and every video is
written atomically with a sidecar JSON that records how it was made.
"""

from __future__ import annotations

import argparse
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motionkit.errors import MotionkitError

# Re-exported: the commands build pipelines with these library helpers.
from motionkit.pipeline.build import DTYPES, assemble_pipeline, device_and_dtype, quiet_loading  # noqa: F401

BACKENDS = ("auto", "sdpa", "math", "xformers", "triton")
VIDEO_SUFFIXES = ("mp4", "gif", "webp", "png")
MIN_SIDE = 64  # 8 latent pixels: SD UNets downsample the latent three times

# Settings with their defaults; None means "decided later" (the base model's native size, the device's dtype).
DEFAULTS: dict[str, Any] = {
    "frames": 16,
    "width": None,
    "height": None,
    "steps": 25,
    "guidance": 7.5,
    "scheduler": "ddim",
    "strength": 1.0,
    "motion_scale": None,
    "noise_aug": 0.0,
    "image_guidance": "pia",
    "context_length": None,
    "context_overlap": 4,
    "context_stride": 1,
    "context_loop": False,
    "fps": 8.0,
    "device": None,
    "dtype": None,
    "attention_backend": "auto",
    "negative_prompt": None,
    "seed": None,
}
# What the base/adapter loading needs, shared by every prompt of a batch.
MODEL_KEYS = ("base", "adapter", "base_config", "tokenizer", "lora", "motion_lora", "device", "dtype", "attention_backend", "scheduler")
# What a single prompt of a batch may set for itself.
PROMPT_KEYS = {
    "prompt", "negative_prompt", "seed", "image", "out", "frames", "width", "height", "steps", "guidance",
    "strength", "motion_scale", "noise_aug", "image_guidance", "context_length", "context_overlap", "context_stride", "context_loop", "fps",
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
    add("--prompt", help="what the video shows")
    add("--negative-prompt", help="what to steer away from")
    add("--frames", type=int, help="number of frames (default 16)")
    add("--width", type=int, help="width in pixels, a multiple of 8 (default: the base model's native size)")
    add("--height", type=int, help="height in pixels, a multiple of 8 (default: the base model's native size)")
    add("--steps", type=int, help="denoising steps (default 25)")
    add("--guidance", type=float, help="classifier-free guidance scale (default 7.5)")
    add("--seed", type=int, help="random seed (default: a fresh one, recorded in the sidecar JSON)")
    add("--scheduler", help="ddim (default), euler, euler_a, dpmpp_2m or lcm")
    add("--strength", type=float, help="image-to-video: fraction of the schedule run from the noised image (default 1.0)")
    add("--motion-scale", type=int, help="image-to-video with a conditioning adapter: motion preset 0-8")
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
    add("--base-config", help="diffusers-format config folder for a single-file base (overrides the shipped configs)")
    add("--tokenizer", help="CLIP tokenizer folder (single-file bases carry none)")
    add("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    add("--dtype", choices=DTYPES, help="default: fp16 on cuda, fp32 on cpu")
    add("--fps", type=float, help="frames per second of the written video (default 8)")
    add("--attention-backend", choices=BACKENDS, help="temporal attention kernel (default auto)")
    add("--out", help="output: OUT.mp4, .gif, .webp, or a frame folder DIR/ (a batch: an output folder)")
    parser.set_defaults(func=run)


# --------------------------------------------------------------------------------------------- jobs


@dataclass
class Job:
    """One video to make: its prompt, where it goes, and its settings (defaults filled in)."""

    prompt: str
    out: Path
    settings: dict[str, Any]
    image: Path | None = None


@dataclass
class Plan:
    base: Path
    adapter: Path
    base_config: Path | None
    tokenizer: Path | None
    loras: list[tuple[str, float]]
    model: dict[str, Any]
    motion_loras: list[tuple[str, float]] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The options set on the command line (None means not given)."""
    skip = {"func", "command", "version", "config"}
    return {k: v for k, v in vars(args).items() if k not in skip and v is not None}


def _existing(path: Any, what: str, flag: str) -> Path:
    if path is None or str(path) == "":
        raise MotionkitError(f"no {what} given: pass {flag}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}; check {flag}")
    return path


def _check_out(out: Path, flag: str = "--out") -> None:
    from motionkit.video_io import WRITE_FORMATS, resolve_target

    try:
        resolve_target(out)
    except MotionkitError:
        raise MotionkitError(f"{out}: cannot write '{out.suffix}' videos; give {flag} one of {', '.join(WRITE_FORMATS)}") from None


def _check_settings(s: dict[str, Any], where: str = "") -> None:
    """Cheap checks that need no model, so a typo fails in a second, not after loading weights."""
    at = f"{where}: " if where else ""
    if not isinstance(s["frames"], int) or s["frames"] < 1:
        raise MotionkitError(f"{at}--frames must be at least 1, got {s['frames']}")
    if not isinstance(s["steps"], int) or s["steps"] < 1:
        raise MotionkitError(f"{at}--steps must be at least 1, got {s['steps']}")
    for side in ("width", "height"):
        value = s[side]
        if value is None:
            continue
        if not isinstance(value, int) or value % 8:
            raise MotionkitError(f"{at}--{side} must be a multiple of 8, got {value}: use {max(MIN_SIDE, int(value) // 8 * 8)}")
        if value < MIN_SIDE:
            raise MotionkitError(f"{at}--{side} {value} is too small: use at least {MIN_SIDE} pixels")
    if not 0.0 < float(s["strength"]) <= 1.0:
        raise MotionkitError(f"{at}--strength must lie in (0, 1], got {s['strength']}")
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
    if float(s["fps"]) <= 0:
        raise MotionkitError(f"{at}--fps must be positive, got {s['fps']}")


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
    settings = {**DEFAULTS, **{k: v for k, v in given.items() if k in DEFAULTS}}
    _check_scheduler(settings["scheduler"])
    plan = Plan(
        base=_existing(given.get("base"), "base model", "--base"),
        adapter=_existing(given.get("adapter"), "motion adapter", "--adapter"),
        base_config=_existing(given["base_config"], "config folder", "--base-config") if given.get("base_config") else None,
        tokenizer=_existing(given["tokenizer"], "tokenizer folder", "--tokenizer") if given.get("tokenizer") else None,
        loras=_loras(given.get("lora")),
        motion_loras=_loras(given.get("motion_lora"), "--motion-lora"),
        model={k: settings[k] for k in ("device", "dtype", "attention_backend", "scheduler")},
    )
    for index, entry in enumerate(prompts):
        where = f"prompt {index + 1}" if batch else ""
        job_settings = {**settings, **{k: v for k, v in entry.items() if k in DEFAULTS}}
        _check_settings(job_settings, where)
        prompt = entry.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise MotionkitError(f"{where}: empty prompt; give it some text" if batch else "no prompt given: pass --prompt TEXT")
        image = _existing(entry["image"], "image", "--image") if entry.get("image") else None
        if batch:
            target = out / (entry.get("out") or f"{index + 1:03d}-{_slug(prompt)}.{given.get('format', 'mp4')}")
        else:
            target = out
        _check_out(target)
        if job_settings["seed"] is None:
            job_settings["seed"] = random.SystemRandom().randrange(2**31)
        plan.jobs.append(Job(prompt=prompt, out=target, settings=job_settings, image=image))
    return plan


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
        if entry.get("image"):
            entry["image"] = resolve(entry["image"])
        entries.append(entry)

    known = set(DEFAULTS) | set(MODEL_KEYS) | {"out", "output_dir", "format"}
    data.pop("n_prompt", None)
    unknown = sorted(set(data) - known)
    if unknown:
        raise MotionkitError(f"{path}: unknown setting {unknown[0]!r}: use {', '.join(sorted(known))}")
    for key in ("base", "adapter", "base_config", "tokenizer"):
        if key in data:
            data[key] = resolve(data[key])
    for key in ("lora", "motion_lora"):
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


def build_pipeline(plan: Plan) -> Any:
    """Base model + adapter (checked to fit) + scheduler + LoRAs, on the chosen device and dtype."""
    from motionkit.formats import apply_motion_lora
    from motionkit.pipeline.loading import load_adapter_for, load_base
    from motionkit.pipeline.lora import apply_loras

    device, dtype = device_and_dtype(plan.model["device"], plan.model["dtype"])
    with quiet_loading():
        components = load_base(plan.base, config=plan.base_config, tokenizer=plan.tokenizer, dtype=dtype, device=device)
        adapter = load_adapter_for(components, plan.adapter)
    for index, (path, scale) in enumerate(plan.motion_loras):
        apply_motion_lora(adapter, path, scale=scale, name=f"motion_lora_{index}")
    pipe = assemble_pipeline(components, adapter, plan.model["scheduler"], plan.model["attention_backend"])
    if plan.loras:
        apply_loras(pipe, plan.loras)
    return pipe


def _metadata(plan: Plan, job: Job) -> dict[str, Any]:
    from motionkit import __version__

    s = job.settings
    return {
        "generator": f"motionkit {__version__} animate",
        "motionkit_version": __version__,
        "prompt": job.prompt,
        "negative_prompt": s["negative_prompt"],
        "seed": s["seed"],
        "image": str(job.image) if job.image else None,
        "base": str(plan.base),
        "base_config": str(plan.base_config) if plan.base_config else None,
        "adapter": str(plan.adapter),
        "loras": [{"path": path, "scale": scale} for path, scale in plan.loras],
        "motion_loras": [{"path": path, "scale": scale} for path, scale in plan.motion_loras],
        "settings": {k: s[k] for k in DEFAULTS if k not in ("negative_prompt", "seed")},
    }


def _render(pipe: Any, plan: Plan, job: Job) -> Path:
    import torch

    from motionkit.video_io import write_video

    s = job.settings
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    s["width"], s["height"] = s["width"] or size, s["height"] or size
    s["device"], s["dtype"] = str(pipe.device), str(pipe.unet.dtype).replace("torch.", "")
    output = pipe(
        prompt=job.prompt,
        negative_prompt=s["negative_prompt"],
        image=str(job.image) if job.image else None,
        num_frames=s["frames"],
        height=s["height"],
        width=s["width"],
        num_inference_steps=s["steps"],
        guidance_scale=s["guidance"],
        generator=torch.Generator("cpu").manual_seed(int(s["seed"])),
        strength=s["strength"],
        noise_aug_strength=s["noise_aug"],
        motion_scale=s["motion_scale"],
        image_guidance=s["image_guidance"],
        context_length=s["context_length"],
        context_overlap=s["context_overlap"],
        context_stride=s["context_stride"],
        context_loop=bool(s["context_loop"]),
        output_type="np",
    )
    return write_video(output.frames[0], job.out, fps=s["fps"], metadata=_metadata(plan, job))


def run(args: argparse.Namespace) -> int:
    given = _given(args)
    if args.config:
        config = _existing(args.config, "batch file", "--config")
        merged, entries, out = _batch(config, given)
        plan = _plan(merged, entries, out, batch=True)
    else:
        if not given.get("out"):
            raise MotionkitError("no output given: pass --out OUT.mp4 (or .gif, .webp, DIR/)")
        entry = {k: given[k] for k in ("prompt", "image") if k in given}
        plan = _plan(given, [entry], Path(given["out"]), batch=False)
    pipe = build_pipeline(plan)
    for job in plan.jobs:
        written = _render(pipe, plan, job)
        print(f"wrote {written} ({job.settings['frames']} frames, seed {job.settings['seed']})")
    return 0

"""One generation, from the form's raw values to an mp4, a gif and their settings record, with no Gradio in sight.

Everything the page sends is checked here (names against the models listing, numbers against the
limits and the cost budget, the uploads against their byte size, format and pixel count, a control video
against the frame count) before any model is touched. The form's fields are named in ``FORM``; a request is a mapping of them, checked into a
``Job`` (a dataclass), so a new group of inputs is a few names here and a field there.

A run can be stopped: ``Stop.request()`` (the Stop button, a cancelled API job, a closed tab) is seen
after the current denoising step, the run raises ``Stopped``, and the sampler's lock is free again.
"""

from __future__ import annotations

import functools
import html
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from motionkit.app.cache import ModelCache
from motionkit.app.defaults import adapter_config, motion_scale_support
from motionkit.app.limits import (
    Limits, Settings, check_cost, check_scale, check_settings, echo, open_source_video, open_upload, open_video_upload, parse_source_range,
)
from motionkit.app.models import ModelsFolder
from motionkit.errors import MotionkitError

NO_LORA = "(none)"  # the "nothing chosen" entry of every optional model dropdown
MAX_PROMPT_CHARS = 1000
MAX_SCHEDULE_CHARS = 4000  # a prompt schedule holds several prompts
MAX_MESSAGE_CHARS = 300
KEEP_OUTPUTS_S = 3600  # Gradio copies results into its own cache; ours only need to outlive one response
MOTION_LORA_SLOTS = 2
LOCK_POLL_S = 0.2

# The request's fields, in the order of the page's inputs and of the /generate API's arguments.
FORM: tuple[str, ...] = (
    "image", "prompt", "negative_prompt", "base", "adapter",
    *(f"motion_lora_{i}{part}" for i in range(1, MOTION_LORA_SLOTS + 1) for part in ("", "_scale")),
    "image_lora", "image_lora_scale", "scheduler",
    "frames", "width", "height", "steps", "guidance", "seed", "random_seed",
    "strength", "anchor_first_frame", "image_guidance", "image_inversion", "unfamiliar_images", "motion_scale", "context_length", "context_loop", "fps",
    "encoder", "encoder_scale", "first_keyframe", "last_keyframe", "controlnet", "controlnet_scale", "control_video",
    "prompt_schedule", "prompt_interpolation", "motion_strength", "noise_correlation", "frame_noise_means", "free_init", "free_noise", "free_noise_length", "free_noise_stride",
    "video", "video_frames", "ip_adapter", "ip_image", "ip_scale", "preset",
    "offload", "vae_slicing", "vae_tiling", "decode_chunk",
)

# progress(done, total, what): called while a request runs
Progress = Callable[[int, int, str], None]


class Stopped(MotionkitError):
    """A run ended early because its stop was requested."""


class Stop:
    """A request to stop one run, seen after every denoising step; records when it came and when it was seen."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.steps_done = 0  # updated by the run after each step
        self.requested_at: int | None = None  # steps done when stop was asked for

    def request(self) -> None:
        if not self._event.is_set():
            self.requested_at = self.steps_done
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class Control:
    """A checked control request: a SparseCtrl encoder with its keyframes, or a ControlNet with its video."""

    kind: str  # the models-folder kind: "encoder" or "controlnet"
    name: str
    path: Path
    scale: float
    keyframes: tuple[tuple[int, Any, str], ...] = ()  # (frame index, PIL image, "uploaded" or "first frame")
    video: Any = None  # the control video, uint8 [F, H, W, 3]

    def call_kwargs(self) -> dict[str, Any]:
        """The control arguments of ``MotionPipeline.__call__``."""
        if self.kind == "encoder":
            return {
                "conditioning_frames": [image for _, image, _ in self.keyframes],
                "controlnet_frame_indices": [index for index, _, _ in self.keyframes],
                "controlnet_conditioning_scale": self.scale,
            }
        return {"conditioning_frames": self.video, "controlnet_conditioning_scale": self.scale}

    def record(self) -> dict[str, Any]:
        """What the settings record says of it (names and numbers; no pixels, no server paths)."""
        entry: dict[str, Any] = {"name": self.name, "scale": self.scale}
        if self.kind == "encoder":
            entry["keyframes"] = [{"index": index, "image": source} for index, _, source in self.keyframes]
        else:
            entry["video"] = {"frames": len(self.video), "width": self.video.shape[2], "height": self.video.shape[1]}
        return entry


@dataclass(frozen=True)
class ImagePrompt:
    """A checked IP-Adapter request: the adapter from ``ip-adapters/``, its image encoder, scale and reference image."""

    name: str
    path: Path
    encoder: Path
    scale: float
    image: Any  # PIL image

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "scale": self.scale, "image": "uploaded"}


@dataclass(frozen=True)
class Job:
    """A checked request: what to draw, with which models, under which settings."""

    prompt: Any  # text, or a motionkit.pipeline.prompt_schedule.PromptSchedule (prompt travel)
    negative_prompt: str | None
    image: Any  # PIL image or None
    base: tuple[str, Path]
    adapter: tuple[str, Path]
    motion_loras: tuple[tuple[str, Path, float], ...]
    image_loras: tuple[tuple[str, Path, float], ...]
    scheduler: str
    settings: Settings
    control: Control | None = None
    prompt_interpolation: str = "linear"
    video: Any = None  # a motionkit.pipeline.video_input.SourceVideo for video-to-video
    ip_adapter: ImagePrompt | None = None
    preset: Any = None  # a motionkit.pipeline.few_step.FewStepPreset
    familiarity: dict[str, Any] | None = None  # what the rule for unfamiliar images measured and chose, once sampled


@dataclass(frozen=True)
class Result:
    mp4: Path
    gif: Path
    record: Path  # the mp4's sidecar JSON: prompt, seed, models, settings
    summary: str
    seed: int
    steps_done: int = 0


@dataclass
class RunLog:
    """What the last run did, for the page's summary and for tests."""

    steps_done: int = 0
    total: int = 0
    stopped: bool = False
    stop_requested_at: int | None = None
    waited_s: float = 0.0  # for the lock: another video was being made


def _text(value: Any, what: str, required: bool = False, limit: int = MAX_PROMPT_CHARS) -> str | None:
    if value is None or value == "":
        if required:
            raise MotionkitError(f"no {what} given: describe the video in a few words")
        return None
    if not isinstance(value, str):
        raise MotionkitError(f"the {what} must be text")
    if len(value) > limit:
        raise MotionkitError(f"the {what} is {len(value)} characters long; keep it under {limit}")
    if required and not value.strip():
        raise MotionkitError(f"no {what} given: describe the video in a few words")
    return value


def _upload_path(upload: Any, what: str = "image") -> Path | None:
    """The server-side path of an upload as Gradio hands it over (a FileData dict, or a path when preprocessed)."""
    if upload is None:
        return None
    if isinstance(upload, dict):
        path = upload.get("path")
        if not path:
            raise MotionkitError(f"the {what} did not arrive as a file: upload it again")
        return Path(path)
    if isinstance(upload, Path):  # direct Python callers; text from the page is never taken as a path
        return upload
    raise MotionkitError(f"the {what} did not arrive as a file: upload it again")


def _chosen(value: Any) -> bool:
    return value not in (None, "", NO_LORA)


class Service:
    """Checks a request, samples it with the cached models and writes the videos with their record."""

    def __init__(self, models: ModelsFolder, limits: Limits, cache: ModelCache, out_dir: Path | None = None):
        import torch

        # Gradio samples in worker threads, and a new thread may get another intra-op thread count than the one
        # that started the server; reductions then split differently and the same seed gives another video.
        self.threads = torch.get_num_threads()
        self.models, self.limits, self.cache = models, limits, cache
        self._tmp = None if out_dir else tempfile.TemporaryDirectory(prefix="motionkit-app-")
        self.out_dir = Path(out_dir) if out_dir else Path(self._tmp.name)
        self.last_run = RunLog()

    def close(self) -> None:
        """Remove every output written (what the temporary folder's finaliser does at exit, now)."""
        if self._tmp is not None:
            self._tmp.cleanup()

    def public_message(self, err: BaseException) -> str:
        """The error's first line for the page: server paths replaced by model names, cut short, HTML-escaped
        (Gradio renders messages as HTML, and they may echo what the user sent)."""
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        from motionkit.models_folder import KINDS

        for kind in KINDS:
            for name, path in self.models.listing(kind).items():
                message = message.replace(str(path), name)
        message = message.replace(str(self.models.root), "models folder")
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        return html.escape(message, quote=False)

    # -- checking ---------------------------------------------------------------------------------

    def check(self, form: Mapping[str, Any]) -> Job:
        """Turn the raw form values into a ``Job``, or refuse the first bad one in a one-line MotionkitError."""
        from motionkit.pipeline.schedulers import SCHEDULERS

        missing = [name for name in FORM if name not in form]
        if missing:
            raise MotionkitError(f"the request lacks {', '.join(missing[:3])}: send every field of the form")
        settings = check_settings(self.limits, form)
        prompt, interpolation = self._prompt(form, settings)
        negative = _text(form["negative_prompt"], "negative prompt")
        base = self._named("base", form["base"])
        adapter = self._named("adapter", form["adapter"])
        motion_loras = tuple(
            self._scaled("lora", form[f"motion_lora_{i}"], form[f"motion_lora_{i}_scale"])
            for i in range(1, MOTION_LORA_SLOTS + 1)
            if _chosen(form[f"motion_lora_{i}"])
        )
        image_loras = (
            (self._scaled("image_lora", form["image_lora"], form["image_lora_scale"]),)
            if _chosen(form["image_lora"]) else ()
        )
        scheduler = form["scheduler"]
        if not isinstance(scheduler, str) or scheduler not in SCHEDULERS:
            raise MotionkitError(f"unknown scheduler {echo(scheduler)}: choose one of {', '.join(SCHEDULERS)}")
        upload = _upload_path(form["image"])
        image = open_upload(upload, self.limits) if upload is not None else None
        if settings.motion_scale and image is not None:
            why = motion_scale_support(adapter_config(adapter[1]))
            if why:
                raise MotionkitError(f"motion scale {settings.motion_scale} was asked for, but {why}: set it to 0")
        if settings.context_loop and settings.frames < 3:
            raise MotionkitError(f"a loop needs at least 3 frames, got {settings.frames}")
        if settings.free_noise:
            self._check_free_noise(settings, adapter[1])
        control = self._control(form, settings, image)
        video = self._source_video(form, settings, image)
        if image is not None or video is not None:
            settings = replace(settings, free_init=0)  # FreeInit is text-to-video's: a second pass drifts from the image
        elif settings.free_init > 1:
            check_cost(self.limits, settings.frames, settings.width, settings.height, settings.steps, settings.free_init)
        preset = self._preset(form["preset"], adapter[0], image_loras)
        return Job(
            prompt, negative, image, base, adapter, motion_loras, image_loras, scheduler, settings, control,
            prompt_interpolation=interpolation, video=video, ip_adapter=self._image_prompt(form), preset=preset,
        )

    def _prompt(self, form: Mapping[str, Any], settings: Settings) -> tuple[Any, str]:
        """The prompt as text, or a prompt schedule (the command line's ``--prompt-schedule`` syntax, its parser),
        checked against the frame count; and how the embeddings travel between keys."""
        from motionkit.pipeline.prompt_schedule import INTERPOLATIONS, parse_schedule

        text = _text(form["prompt_schedule"], "prompt schedule", limit=MAX_SCHEDULE_CHARS)
        interpolation = form["prompt_interpolation"]
        if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS:
            raise MotionkitError(f"unknown prompt interpolation {echo(interpolation)}: choose {' or '.join(INTERPOLATIONS)}")
        if text is None or not text.strip():
            return _text(form["prompt"], "prompt", required=True), interpolation
        if _text(form["prompt"], "prompt"):
            raise MotionkitError("give a prompt or a prompt schedule, not both: clear the Prompt box to travel between prompts")
        schedule = parse_schedule(text)
        schedule.frames(settings.frames)  # keys outside the video or out of order are refused now
        return schedule, interpolation

    def _check_free_noise(self, settings: Settings, adapter: Path) -> None:
        """FreeNoise's window must fit the adapter's position table (it attends over one window at a time)."""
        table = adapter_config(adapter).get("max_seq_length")
        table = table if isinstance(table, int) and table > 0 else None
        window = settings.free_noise_length or table or 16
        if table is not None and window > table:
            raise MotionkitError(
                f"the FreeNoise window of {window} frames is longer than this adapter's position table of {table}: "
                f"use at most {table} (0: the table)"
            )
        if settings.free_noise_stride > window:
            raise MotionkitError(
                f"FreeNoise stride {settings.free_noise_stride} is more than its window of {window} frames: use at most {window}"
            )

    def _source_video(self, form: Mapping[str, Any], settings: Settings, image: Any) -> Any:
        """Video-to-video: the uploaded source clip, ``Frames`` frames picked at the output fps from its range."""
        upload = _upload_path(form["video"], "source video")
        frame_range = parse_source_range(form["video_frames"])
        if upload is None:
            if frame_range != (0, None):
                raise MotionkitError("a source frame range needs a source video: upload one, or clear the range")
            return None
        if image is not None:
            raise MotionkitError("a first frame and a source video do not mix: remove one (image- or video-to-video)")
        return open_source_video(upload, self.limits, settings.frames, settings.fps, frame_range)

    def _image_prompt(self, form: Mapping[str, Any]) -> ImagePrompt | None:
        """The IP-Adapter from ``ip-adapters/`` with its reference image; an image without an adapter is refused."""
        from motionkit.models_folder import IP_ENCODER_FOLDER, KINDS

        upload = _upload_path(form["ip_image"], "reference image")
        if not _chosen(form["ip_adapter"]):
            if upload is not None:
                raise MotionkitError("a reference image needs an IP-Adapter: choose one under Image prompt, or remove the image")
            return None
        name, path, scale = self._scaled("ip_adapter", form["ip_adapter"], form["ip_scale"])
        encoder = path.parent / IP_ENCODER_FOLDER
        if not (encoder / "config.json").is_file():
            folder = KINDS["ip_adapter"][0]
            raise MotionkitError(
                f"the IP-Adapter {echo(name)} has no CLIP image encoder beside it: put the image_encoder/ folder that "
                f"comes with it in {folder}/{IP_ENCODER_FOLDER}/"
            )
        if upload is None:
            raise MotionkitError(f"the IP-Adapter {echo(name)} needs a reference image: upload one under Image prompt")
        return ImagePrompt(name, path, encoder, scale, open_upload(upload, self.limits))

    def _preset(self, value: Any, adapter: str, image_loras: tuple[tuple[str, Path, float], ...]) -> Any:
        """The few-step preset, refused unless the adapter (and the LoRA) it is made for are the ones chosen."""
        from motionkit.app.presets import preset_problem
        from motionkit.pipeline.few_step import PRESETS

        if not _chosen(value):
            return None
        if not isinstance(value, str) or value not in PRESETS:
            raise MotionkitError(f"unknown preset {echo(value)}: choose one of {', '.join(PRESETS)}")
        preset = PRESETS[value]
        why = preset_problem(preset, self.models.resolve("adapter", adapter), [path for _, path, _ in image_loras])
        if why:
            raise MotionkitError(f"preset {preset.name} was asked for, but {why}")
        return preset

    def _control(self, form: Mapping[str, Any], settings: Settings, image: Any) -> Control | None:
        """The request's encoder and keyframes or ControlNet and video; a keyframe or video without its model is refused.

        The first keyframe defaults to the first frame (the conditioning image) when an encoder is chosen
        and none is uploaded; the last keyframe goes on the last frame.
        """
        encoder, controlnet = _chosen(form["encoder"]), _chosen(form["controlnet"])
        first = _upload_path(form["first_keyframe"], "first keyframe")
        last = _upload_path(form["last_keyframe"], "last keyframe")
        video = _upload_path(form["control_video"], "control video")
        if encoder and controlnet:
            raise MotionkitError("choose a keyframe encoder or a ControlNet, not both: a pipeline holds one control model")
        if not encoder and (first or last):
            raise MotionkitError("keyframes need a keyframe encoder: choose one under Keyframes and control, or remove the keyframes")
        if not controlnet and video:
            raise MotionkitError("a control video needs a ControlNet: choose one under Keyframes and control, or remove the video")
        if encoder:
            name, path, scale = self._scaled("encoder", form["encoder"], form["encoder_scale"])
            keyframes = []
            if first is not None:
                keyframes.append((0, open_upload(first, self.limits), "uploaded"))
            elif image is not None:
                keyframes.append((0, image, "first frame"))
            if last is not None:
                if settings.frames < 2:
                    raise MotionkitError("a last keyframe needs at least 2 frames: raise Frames or remove it")
                keyframes.append((settings.frames - 1, open_upload(last, self.limits), "uploaded"))
            if not keyframes:
                raise MotionkitError(
                    f"the keyframe encoder {echo(name)} needs a keyframe: upload a first or last keyframe, or a first frame"
                )
            return Control("encoder", name, path, scale, keyframes=tuple(keyframes))
        if controlnet:
            name, path, scale = self._scaled("controlnet", form["controlnet"], form["controlnet_scale"])
            if video is None:
                raise MotionkitError(f"the ControlNet {echo(name)} needs a control video: upload one of {settings.frames} frames")
            return Control("controlnet", name, path, scale, video=open_video_upload(video, self.limits, settings.frames))
        return None

    def _named(self, kind: str, name: Any) -> tuple[str, Path]:
        return name, self.models.resolve(kind, name)

    def _scaled(self, kind: str, name: Any, scale: Any) -> tuple[str, Path, float]:
        path = self.models.resolve(kind, name)
        return name, path, check_scale(scale, f"scale of {name}")

    # -- running ----------------------------------------------------------------------------------

    def generate(self, form: Mapping[str, Any], progress: Progress | None = None, stop: Stop | None = None) -> Result:
        """Check ``form`` (fields: ``FORM``), sample it and write the videos; ``stop`` ends it after a step."""
        progress = progress or (lambda done, total, what: None)
        stop = stop or Stop()
        job = self.check(form)
        frames, seconds, job = self._sample(job, progress, stop)
        progress(job.settings.steps, job.settings.steps, "Writing video")
        return self._write(frames, job, seconds)

    def _acquire(self, stop: Stop, progress: Progress, total: int) -> float:
        """Take the sampler's lock (seconds waited); a stop while waiting gives up without sampling."""
        lock, start = self.cache.lock, time.perf_counter()
        if lock.acquire(blocking=False):
            return 0.0
        progress(0, total, "Waiting for another video to finish")
        while not lock.acquire(timeout=LOCK_POLL_S):
            if stop.requested:
                raise Stopped("stopped before sampling began (another video was being made)")
        return time.perf_counter() - start

    def _sample(self, job: Job, progress: Progress, stop: Stop) -> tuple[Any, float, Job]:
        """The frames of ``job``, the seconds sampling took, and the job as sampled (the settings for an
        unfamiliar image in place when the folder's rule chose them)."""
        import torch

        from motionkit.noise_prior import text_to_video_noise
        from motionkit.pipeline.free_init import set_free_init_passes

        torch.set_num_threads(self.threads)  # the same count in every worker thread: the same seed, the same video
        s = job.settings
        waited = self._acquire(stop, progress, s.steps)
        log = self.last_run = RunLog(total=s.steps, waited_s=waited)
        try:
            if stop.requested:
                raise Stopped("stopped before sampling began")
            progress(0, s.steps, "Loading models")
            ip = job.ip_adapter
            pipe = self.cache.pipeline(
                job.base[1], job.adapter[1], [(p, w) for _, p, w in job.motion_loras], job.scheduler,
                image_loras=[(p, w) for _, p, w in job.image_loras],
                control=(job.control.path, job.control.kind) if job.control else None,
                ip_adapter=(ip.path, ip.encoder, ip.scale) if ip else None,
                offload=s.offload, vae_slicing=s.vae_slicing, vae_tiling=s.vae_tiling,
            )
            if job.preset is not None and job.scheduler == job.preset.scheduler:
                from motionkit.pipeline.few_step import apply_preset

                apply_preset(pipe, job.preset)  # its scheduler settings (trailing spacing...); another scheduler chosen wins
            if s.free_noise:
                pipe.enable_free_noise(s.free_noise_length, s.free_noise_stride)
            else:
                pipe.disable_free_noise()  # the cached pipeline keeps no earlier request's windows
            with_image = job.image is not None
            set_free_init_passes(pipe, s.free_init)  # text-to-video's alone: ``check`` set it to 0 for an image or a video
            if with_image and s.unfamiliar_images:
                job = self._familiar(pipe, job)
                s = job.settings
            # strength < 1 runs only the tail of the schedule: that many steps are reported.
            # FreeInit samples its passes one after another, each counting its steps from 0: they add up here.
            total = max(1, int(s.steps * s.strength)) if with_image or job.video is not None else s.steps * max(1, s.free_init)
            log.total = total

            def on_step(_pipe: Any, _step: int, _t: Any, _tensors: dict) -> dict:
                done = stop.steps_done = log.steps_done = log.steps_done + 1
                if stop.requested:
                    raise Stopped(f"stopped after {done} of {total} steps")
                progress(done, total, "Sampling")
                return {}

            context = s.context_length
            if s.context_loop and context is None:
                context = max(2, s.frames // 2)  # a loop wraps windows around the end: it needs more than one
            start = time.perf_counter()
            output = pipe(
                prompt=job.prompt,
                negative_prompt=job.negative_prompt,
                image=job.image,
                num_frames=s.frames,
                height=s.height,
                width=s.width,
                num_inference_steps=s.steps,
                guidance_scale=s.guidance,
                generator=torch.Generator("cpu").manual_seed(s.seed),
                strength=s.strength if with_image or job.video is not None else 1.0,
                anchor_first_frame=s.anchor_first_frame if with_image else None,
                # 0 is the form's "off"; PIA's presets act on the image branch only (checked in ``check``).
                motion_scale=s.motion_scale if with_image and s.motion_scale else None,
                image_guidance=s.image_guidance,
                image_inversion=s.image_inversion if with_image else 0.0,
                context_length=context,
                context_overlap=min(4, context - 1) if context else 4,
                context_loop=s.context_loop,
                prompt_interpolation=job.prompt_interpolation,
                motion_strength=s.motion_strength,
                **text_to_video_noise(s.noise_correlation, s.frame_noise_means, conditioned=with_image or job.video is not None),
                video=job.video,
                ip_adapter_image=ip.image if ip else None,
                decode_chunk_size=s.decode_chunk,
                callback_on_step_end=on_step,
                output_type="np",
                **(job.control.call_kwargs() if job.control else {}),
            )
            return output.frames[0], time.perf_counter() - start, job
        except Stopped:
            log.stopped, log.stop_requested_at = True, stop.requested_at
            raise
        finally:
            self.cache.lock.release()

    @functools.cached_property
    def _unfamiliar_declared(self) -> dict[str, Any] | None:
        """The folder's ``unfamiliar_images`` declaration, read once (the page is built from it once too)."""
        from motionkit.model_defaults import read_declaration
        from motionkit.pipeline.image_familiarity import DECLARED_KEY

        declaration = read_declaration(self.models.root)
        return declaration.settings.get(DECLARED_KEY) if declaration is not None else None

    def _familiar(self, pipe: Any, job: Job) -> Job:
        """``job`` with the models folder's settings for unfamiliar images when its image is one (none declared:
        ``job`` itself); what was measured goes to the record and the summary."""
        from motionkit.pipeline.image_familiarity import unfamiliar_images_rule

        declared = self._unfamiliar_declared
        if declared is None:
            return job
        rule = unfamiliar_images_rule(declared, str(self.models.root), job.base[0], self.models.root)
        if rule is None:
            return job
        if job.preset is not None:
            rule = rule.without({"guidance"})  # a few-step preset's guidance is part of the preset
        if not rule.settings:
            return job
        s = job.settings
        measured = rule.measure(pipe, job.image, s.height, s.width)
        applied = measured["applied"]
        familiarity = {**measured, "settings": rule.described() if applied else None}
        settings = replace(s, **rule.settings) if applied else s
        return replace(job, settings=settings, familiarity=familiarity)

    def _record(self, job: Job) -> dict[str, Any]:
        from motionkit import __version__

        travel = {} if isinstance(job.prompt, str) else {"prompt_schedule": job.prompt.to_list(job.settings.frames)}
        return {
            "generator": f"motionkit {__version__} app",
            "motionkit_version": __version__,
            "prompt": job.prompt if isinstance(job.prompt, str) else str(job.prompt),
            **travel,
            "negative_prompt": job.negative_prompt,
            "seed": job.settings.seed,
            "image": "uploaded" if job.image is not None else None,
            "video": {**job.video.to_dict(), "path": "uploaded"} if job.video is not None else None,
            "base": job.base[0],
            "adapter": job.adapter[0],
            "loras": [{"name": name, "scale": scale} for name, _, scale in job.image_loras],
            "motion_loras": [{"name": name, "scale": scale} for name, _, scale in job.motion_loras],
            "encoder": job.control.record() if job.control and job.control.kind == "encoder" else None,
            "controlnet": job.control.record() if job.control and job.control.kind == "controlnet" else None,
            "ip_adapter": job.ip_adapter.record() if job.ip_adapter else None,
            "image_familiarity": job.familiarity,
            "settings": {
                **{k: v for k, v in asdict(job.settings).items() if k != "seed"},
                "prompt_interpolation": job.prompt_interpolation,
                "preset": job.preset.to_dict() if job.preset is not None else None,
                "scheduler": job.scheduler,
                "device": self.cache.device,
                "dtype": str(self.cache.dtype).replace("torch.", ""),
            },
        }

    def _write(self, frames: Any, job: Job, seconds: float) -> Result:
        from motionkit.video_io import sidecar_path, write_video

        self.prune()
        s = job.settings
        folder = self.out_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        stem = f"motionkit-{s.seed}"
        record = self._record(job)
        mp4 = write_video(frames, folder / f"{stem}.mp4", fps=s.fps, metadata=record)
        gif = write_video(frames, folder / f"{stem}.gif", fps=s.fps, metadata=record)
        summary = (
            f"{s.frames} frames at {s.width}x{s.height}, {self.last_run.total} steps, seed {s.seed}, "
            f"sampled in {seconds:.1f} s"
        )
        if job.familiarity and job.familiarity["applied"]:
            summary += (f". The image reads as unlike the models' world ({job.familiarity['findings']}), so it was "
                        f"animated with {job.familiarity['settings']}")
        return Result(mp4=mp4, gif=gif, record=sidecar_path(mp4), summary=summary, seed=s.seed,
                      steps_done=self.last_run.steps_done)

    def prune(self, keep_s: float = KEEP_OUTPUTS_S) -> None:
        """Delete outputs older than ``keep_s`` seconds."""
        cutoff = time.time() - keep_s
        for folder in self.out_dir.iterdir():
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

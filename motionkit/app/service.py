"""One generation, from the form's raw values to an mp4 and a gif on disk, with no Gradio in sight.

Everything the page sends is checked here (names against the models listing, numbers against the
limits, the upload against its byte size, format and pixel count) before any model is touched.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from motionkit.app.cache import ModelCache
from motionkit.app.limits import Limits, check_request, check_scale, open_upload
from motionkit.app.models import ModelsFolder
from motionkit.errors import MotionkitError

NO_LORA = "(none)"
FPS = 8.0
MAX_PROMPT_CHARS = 1000
KEEP_OUTPUTS_S = 3600  # Gradio copies results into its own cache; ours only need to outlive one response

# progress(done, total, what): called while a request runs
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Result:
    mp4: Path
    gif: Path
    summary: str


def _text(value: Any, what: str, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise MotionkitError(f"no {what} given: describe the video in a few words")
        return None
    if not isinstance(value, str):
        raise MotionkitError(f"the {what} must be text")
    if len(value) > MAX_PROMPT_CHARS:
        raise MotionkitError(f"the {what} is {len(value)} characters long; keep it under {MAX_PROMPT_CHARS}")
    if required and not value.strip():
        raise MotionkitError(f"no {what} given: describe the video in a few words")
    return value


def _upload_path(image: Any) -> Path | None:
    """The server-side path of an upload as Gradio hands it over (a FileData dict, or a path when preprocessed)."""
    if image is None:
        return None
    if isinstance(image, dict):
        path = image.get("path")
        if not path:
            raise MotionkitError("the image did not arrive as a file: upload it again")
        return Path(path)
    if isinstance(image, Path):  # direct Python callers; text from the page is never taken as a path
        return image
    raise MotionkitError("the image did not arrive as a file: upload it again")


def _conditioned(pipe: Any) -> bool:
    return getattr(pipe.adapter.config, "image_cond_channels", 0) == 5


class Service:
    """Checks a request, samples it with the cached models and writes the videos."""

    def __init__(self, models: ModelsFolder, limits: Limits, cache: ModelCache, out_dir: Path | None = None):
        self.models, self.limits, self.cache = models, limits, cache
        self._tmp = None if out_dir else tempfile.TemporaryDirectory(prefix="motionkit-app-")
        self.out_dir = Path(out_dir) if out_dir else Path(self._tmp.name)

    def public_message(self, err: BaseException) -> str:
        """The error's one line, with server paths replaced by the names the page knows."""
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        for kind in ("base", "adapter", "lora"):
            for name, path in self.models.listing(kind).items():
                message = message.replace(str(path), name)
        return message.replace(str(self.models.root), "models folder")

    def generate(
        self,
        image: Any,
        prompt: Any,
        negative_prompt: Any,
        base: Any,
        adapter: Any,
        loras: list[tuple[Any, Any]],
        scheduler: Any,
        progress: Progress | None = None,
        **settings: Any,
    ) -> Result:
        """``settings``: frames, width, height, steps, guidance, seed, motion_scale, context_length (raw values)."""
        from motionkit.pipeline.schedulers import SCHEDULERS

        progress = progress or (lambda done, total, what: None)
        request = check_request(self.limits, **settings)
        prompt = _text(prompt, "prompt", required=True)
        negative = _text(negative_prompt, "negative prompt")
        base_path = self.models.resolve("base", base)
        adapter_path = self.models.resolve("adapter", adapter)
        lora_set = [
            (self.models.resolve("lora", name), check_scale(scale, f"scale of {name}"))
            for name, scale in loras
            if name not in (None, "", NO_LORA)
        ]
        if not isinstance(scheduler, str) or scheduler not in SCHEDULERS:
            raise MotionkitError(f"unknown scheduler {str(scheduler)[:40]!r}: choose one of {', '.join(SCHEDULERS)}")
        upload = _upload_path(image)
        first_frame = open_upload(upload, self.limits) if upload is not None else None

        frames, seconds = self._sample(
            base_path, adapter_path, lora_set, scheduler, prompt, negative, first_frame, request, progress
        )
        progress(request.steps, request.steps, "Writing video")
        return self._write(frames, request, seconds)

    def _sample(self, base, adapter, loras, scheduler, prompt, negative, image, request, progress) -> tuple[Any, float]:
        import torch

        if not self.cache.lock.acquire(blocking=False):
            progress(0, request.steps, "Waiting for another video to finish")
            self.cache.lock.acquire()
        try:
            progress(0, request.steps, "Loading models")
            pipe = self.cache.pipeline(base, adapter, loras, scheduler)

            def on_step(_pipe: Any, step: int, _t: Any, _tensors: dict) -> dict:
                progress(step + 1, request.steps, "Sampling")
                return {}

            start = time.perf_counter()
            output = pipe(
                prompt=prompt,
                negative_prompt=negative,
                image=image,
                num_frames=request.frames,
                height=request.height,
                width=request.width,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                generator=torch.Generator("cpu").manual_seed(request.seed),
                # PIA's motion presets act on the image-conditioning branch only; others would just warn.
                motion_scale=request.motion_scale if image is not None and _conditioned(pipe) else None,
                context_length=request.context_length,
                callback_on_step_end=on_step,
                output_type="np",
            )
            return output.frames[0], time.perf_counter() - start
        finally:
            self.cache.lock.release()

    def _write(self, frames: Any, request: Any, seconds: float) -> Result:
        from motionkit.video_io import write_video

        self._prune()
        folder = self.out_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        stem = f"motionkit-{request.seed}"
        mp4 = write_video(frames, folder / f"{stem}.mp4", fps=FPS)
        gif = write_video(frames, folder / f"{stem}.gif", fps=FPS)
        summary = (
            f"{request.frames} frames at {request.width}x{request.height}, {request.steps} steps, "
            f"seed {request.seed}, sampled in {seconds:.1f} s"
        )
        return Result(mp4=mp4, gif=gif, summary=summary)

    def _prune(self) -> None:
        cutoff = time.time() - KEEP_OUTPUTS_S
        for folder in self.out_dir.iterdir():
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

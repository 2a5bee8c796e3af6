"""The Gradio page: the form, live progress, the video, downloads, examples; and serving it."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, NoReturn

import gradio as gr

from motionkit.app.cache import ModelCache
from motionkit.app.limits import MAX_GUIDANCE, MAX_SEED, MIN_SIDE, Limits
from motionkit.app.models import ModelsFolder
from motionkit.app.service import NO_LORA, Service
from motionkit.errors import MotionkitError

logger = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
EXAMPLES = [
    ("sunset.png", "the sun sinking into a calm sea, gentle waves, warm light"),
    ("red-ball.png", "a red ball bouncing on a lawn, sunny day"),
]
LORA_SLOTS = 2
DEFAULT_SIZE = 512


def _lora_choices(models: ModelsFolder) -> list[str]:
    return [NO_LORA, *models.names("lora")]


def _first(names: list[str]) -> str | None:
    return names[0] if names else None


def _default_side(limits: Limits) -> int:
    return max(MIN_SIDE, min(DEFAULT_SIZE, limits.max_size) // 8 * 8)


def _slider(low: float, high: float, value: float, step: float, **kwargs: Any) -> gr.Slider:
    """A slider up to a server limit; a limit equal to the minimum leaves nothing to choose, so it is fixed."""
    if high <= low:  # Gradio refuses min == max
        return gr.Slider(low, low + step, value=low, step=step, interactive=False, **kwargs)
    return gr.Slider(low, high, value=value, step=step, **kwargs)


def build_app(models: ModelsFolder, limits: Limits | None = None, cache: ModelCache | None = None) -> gr.Blocks:
    """The page for ``models`` under ``limits``, sampling with ``cache`` (a new CPU/CUDA cache when not given)."""
    limits = limits or Limits()
    service = Service(models, limits, cache or ModelCache())
    schedulers = _scheduler_names()

    # delete_cache: results are copied into Gradio's cache; drop them after a day so the disk stays bounded.
    with gr.Blocks(title="motionkit", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown("## motionkit: animate an image\nDrop in a first frame (or leave it empty for text-to-video), describe the motion, press Generate.")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(label="First frame (optional)", type="filepath", sources=["upload", "clipboard"], height=256)
                prompt = gr.Textbox(label="Prompt", lines=2, placeholder="what the video shows")
                negative = gr.Textbox(label="Negative prompt", placeholder="what to steer away from")
                with gr.Row():
                    bases = models.names("base")
                    adapters = models.names("adapter")
                    base = gr.Dropdown(bases, value=_first(bases), label="Base checkpoint")
                    adapter = gr.Dropdown(adapters, value=_first(adapters), label="Motion adapter")
                lora_inputs: list[gr.components.Component] = []
                lora_names: list[gr.Dropdown] = []
                with gr.Accordion("MotionLoRAs", open=False):
                    for slot in range(1, LORA_SLOTS + 1):
                        with gr.Row():
                            name = gr.Dropdown(_lora_choices(models), value=NO_LORA, label=f"MotionLoRA {slot}")
                            scale = gr.Slider(-2, 2, value=1.0, step=0.05, label=f"Scale {slot}")
                        lora_names.append(name)
                        lora_inputs += [name, scale]
                    refresh = gr.Button("Rescan models folder", size="sm")
                with gr.Accordion("Settings", open=True):
                    with gr.Row():
                        frames = _slider(1, limits.max_frames, min(16, limits.max_frames), 1, label="Frames")
                        steps = _slider(1, limits.max_steps, min(25, limits.max_steps), 1, label="Steps")
                    with gr.Row():
                        side = _default_side(limits)
                        width = _slider(MIN_SIDE, limits.max_size, side, 8, label="Width")
                        height = _slider(MIN_SIDE, limits.max_size, side, 8, label="Height")
                    with gr.Row():
                        guidance = gr.Slider(0, MAX_GUIDANCE, value=7.5, step=0.5, label="Guidance")
                        scheduler = gr.Dropdown(schedulers, value=schedulers[0], label="Scheduler")
                    with gr.Row():
                        seed = gr.Number(value=random.randrange(MAX_SEED), precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                        randomise = gr.Button("Random seed", size="sm")
                    with gr.Row():
                        motion_scale = gr.Slider(
                            0, 8, value=0, step=1, label="Motion scale",
                            info="image-to-video with an image-conditioned adapter (PIA layout)",
                        )
                        context_length = gr.Slider(
                            0, limits.max_frames, value=0, step=1, label="Context length", info="frames per window; 0: all at once"
                        )
                generate = gr.Button("Generate", variant="primary")
            with gr.Column(scale=1):
                video = gr.Video(label="Video", format=None, autoplay=True, loop=True, interactive=False, height=384)
                summary = gr.Markdown(label="Summary")
                with gr.Row():
                    mp4 = gr.DownloadButton("Download mp4")
                    gif = gr.DownloadButton("Download gif")

        examples = [[str(EXAMPLES_DIR / file), text] for file, text in EXAMPLES if (EXAMPLES_DIR / file).is_file()]
        if examples:
            gr.Examples(examples, inputs=[image, prompt], label="Examples")

        def run(
            image: Any, prompt: Any, negative_prompt: Any, base: Any, adapter: Any,
            lora_1: Any, lora_1_scale: Any, lora_2: Any, lora_2_scale: Any,
            frames: Any, width: Any, height: Any, steps: Any, guidance: Any, seed: Any,
            scheduler: Any, motion_scale: Any, context_length: Any, progress: gr.Progress = gr.Progress(),
        ) -> tuple[Any, ...]:
            def report(done: int, total: int, what: str) -> None:
                progress((done, total), desc=what)

            try:
                result = service.generate(
                    image, prompt, negative_prompt, base, adapter, [(lora_1, lora_1_scale), (lora_2, lora_2_scale)], scheduler,
                    progress=report, frames=frames, width=width, height=height, steps=steps, guidance=guidance,
                    seed=seed, motion_scale=motion_scale, context_length=context_length,
                )
            except (MotionkitError, FileNotFoundError) as err:
                raise gr.Error(service.public_message(err)) from None
            except Exception as err:
                _failed(err)
            return str(result.mp4), result.summary, str(result.mp4), str(result.gif)

        # preprocess=False: the raw values reach Service, which checks every one of them itself (dropdown
        # names against the listing, numbers against the limits, the upload's size and pixels before decoding).
        generate.click(
            run,
            inputs=[image, prompt, negative, base, adapter, *lora_inputs, frames, width, height, steps, guidance, seed,
                    scheduler, motion_scale, context_length],
            outputs=[video, summary, mp4, gif],
            api_name="generate",
            preprocess=False,
        )
        randomise.click(lambda: random.randrange(MAX_SEED), outputs=seed, api_name="random_seed")

        def rescan() -> list[Any]:
            names = {kind: models.names(kind) for kind in ("base", "adapter")}
            return [
                gr.Dropdown(choices=names["base"], value=_first(names["base"])),
                gr.Dropdown(choices=names["adapter"], value=_first(names["adapter"])),
                *[gr.Dropdown(choices=_lora_choices(models), value=NO_LORA) for _ in lora_names],
            ]

        refresh.click(rescan, outputs=[base, adapter, *lora_names], api_name="rescan")
    return demo


def _failed(err: Exception) -> NoReturn:
    import torch

    if isinstance(err, torch.cuda.OutOfMemoryError):
        raise gr.Error("the device ran out of memory: ask for fewer frames, a smaller size or fewer steps") from None
    # Unexpected: the details (and any server paths in them) go to the server log, not to the page.
    logger.exception("generation failed")
    raise gr.Error(f"generation failed on the server ({type(err).__name__}); try other settings") from None


def _scheduler_names() -> list[str]:
    from motionkit.pipeline.schedulers import SCHEDULERS

    return list(SCHEDULERS)


def launch(
    models: ModelsFolder,
    limits: Limits,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    concurrency: int = 1,
    queue_size: int = 16,
    device: str | None = None,
    block: bool = True,
) -> gr.Blocks:
    """Build the page, put it behind a bounded queue and serve it; returns the running app when ``block`` is off."""
    models.check()
    if concurrency < 1 or queue_size < 1:
        raise MotionkitError("--concurrency and --queue-size must be at least 1")
    demo = build_app(models, limits, ModelCache(device=device))
    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=limits.max_upload_bytes,
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo

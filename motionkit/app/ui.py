"""The Gradio page: the form, Generate and Stop, live progress, the video, downloads, examples; and serving it.

Layout: the first frame, the prompt and the Generate / Stop buttons open the left column, the video and
its downloads fill the right one; on a narrow screen the columns stack and Generate scrolls the video
into view. Numbers are typed into plain number boxes, never clamped in the browser: the server checks
them and refuses what it does not allow, in a message on the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from motionkit.app.cache import ModelCache
from motionkit.app.defaults import (
    PageDefaults, adapter_config, base_settings, motion_scale_support, native_size, page_defaults,
)
from motionkit.app.limits import (
    MAX_FPS, MAX_FREE_INIT, MAX_GUIDANCE, MAX_SEED, MIN_SIDE, MIN_STRENGTH, OFFLOAD_OFF, VIDEO_UPLOAD_SUFFIXES, Limits, cost, offload_note,
)
from motionkit.app.models import ModelsFolder
from motionkit.app.presets import offered_presets, preset_form
from motionkit.pipeline.motion_strength import MAX_MOTION_STRENGTH
from motionkit.noise_prior import FRAME_NOISE_MEANS
from motionkit.pipeline.conditioning import IMAGE_GUIDANCE
from motionkit.app.service import FORM, MOTION_LORA_SLOTS, NO_LORA, Service, Stop, Stopped
from motionkit.pipeline.image_familiarity import COLOUR_LIMIT_KEY, RULE_SETTINGS, UnfamiliarImages, rule_limits
from motionkit.errors import MotionkitError

logger = logging.getLogger(__name__)

GENERIC_EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
GENERIC_EXAMPLES = [
    ("sunset.png", "the sun sinking into a calm sea, gentle waves, warm light"),
    ("red-ball.png", "a red ball bouncing on a lawn, sunny day"),
]
# Scrolls the result into view when it is off screen (a narrow window stacks it under the form).
SCROLL_TO_RESULT = """() => {
  const result = document.getElementById('result');
  if (result) {
    const box = result.getBoundingClientRect();
    if (box.top < 0 || box.top > window.innerHeight * 0.5) result.scrollIntoView({behavior: 'instant', block: 'start'});
  }
}"""
CSS = "#generate-row button { min-height: 2.6em; }"
UPLOADS = ("image", "first_keyframe", "last_keyframe", "control_video", "video", "ip_image")  # the form's file fields
SCHEDULE_EXAMPLE = "0: a red ball resting | 50%: a red ball bouncing | -1: a blue ball bouncing"


def _choices(models: ModelsFolder, kind: str) -> list[str]:
    return [NO_LORA, *models.names(kind)]


def _first(names: list[str]) -> str | None:
    return names[0] if names else None


def _about(models: ModelsFolder, defaults: PageDefaults, limits: Limits) -> str:
    """What the page tells about its models and its server."""
    default_cost = cost(defaults.frames, defaults.width, defaults.height, defaults.steps)
    facts = (
        f"Defaults from the models: {defaults.frames} frames at {defaults.width}x{defaults.height}, "
        f"{defaults.steps} steps, guidance {defaults.guidance:g}. "
        f"This server runs on **{limits.device}** and takes requests up to a cost of **{limits.max_cost:g}** "
        f"frame-megapixel-steps (frames x width x height x steps / 10^6; the defaults cost {default_cost:.2f}), "
        f"at most {limits.max_frames} frames, {limits.max_size} px a side and {limits.max_steps} steps."
    )
    about = defaults.about or (
        f"No description of these models was given (add an `about` text to `{models.root.name}/motionkit-app.json`)."
    )
    return f"{about}\n\n{facts}"


def _motion_scale_note(models: ModelsFolder, adapter: str | None) -> str | None:
    """Why motion scale does not apply to ``adapter`` (None when it does)."""
    if adapter is None:
        return "no adapter"
    try:
        return motion_scale_support(adapter_config(models.resolve("adapter", adapter)))
    except MotionkitError:
        return "the adapter is not in the models folder any more"


def _motion_note(why: str | None) -> str:
    return f"Motion scale (PIA presets) is not available: {why}. Motion strength above works for any adapter."


def _limits_in_words(limits: dict[str | None, float]) -> str:
    return f"{limits[None]:g}" if None in limits else ", ".join(f"{v:g} for {k}" for k, v in limits.items())


def _unfamiliar_note(rule: dict[str, Any] | None) -> str:
    """What the models folder's rule for unfamiliar images does, in the checkbox's words."""
    if rule is None:
        return ""
    where = "the models folder's declaration"
    signals = []
    if limits := rule_limits(rule, where):
        signals.append(f"that the image model denoises worse than its own world (error above {_limits_in_words(limits)})")
    if colours := rule_limits(rule, where, COLOUR_LIMIT_KEY):
        signals.append(f"whose colours are far from its world's (distance above {_limits_in_words(colours)})")
    settings = {k: v for k, v in rule.items() if k in RULE_SETTINGS}
    return (f"image-to-video: an image {' or '.join(signals)} is animated with "
            f"{UnfamiliarImages(None, settings).described()}, over the sliders")


def _examples(models: ModelsFolder, defaults: PageDefaults) -> list[tuple[str, list[Any]]]:
    """(label, values in FORM order) of every example; each sets every setting of the form."""
    base, adapter = _first(models.names("base")), _first(models.names("adapter"))
    entries = [(e.image, e.prompt, e.settings) for e in defaults.examples]
    if not entries:  # a folder that declares none gets motionkit's generic ones
        entries = [(GENERIC_EXAMPLES_DIR / f, text, {}) for f, text in GENERIC_EXAMPLES if (GENERIC_EXAMPLES_DIR / f).is_file()]
    rows = []
    for index, (image, prompt, overrides) in enumerate(entries):
        values = {
            **_form_defaults(defaults, base, adapter), **overrides,
            "image": str(image) if image else None, "prompt": prompt, "random_seed": False,
        }
        if "seed" not in overrides:
            values["seed"] = index + 1
        rows.append((prompt if len(prompt) <= 60 else prompt[:57] + "...", [values[name] for name in FORM]))
    return rows


def _form_defaults(defaults: PageDefaults, base: str | None, adapter: str | None) -> dict[str, Any]:
    motion_loras = {}
    for i in range(1, MOTION_LORA_SLOTS + 1):
        motion_loras[f"motion_lora_{i}"], motion_loras[f"motion_lora_{i}_scale"] = NO_LORA, 1.0
    return {
        "image": None, "prompt": "", "negative_prompt": defaults.negative_prompt, "base": base, "adapter": adapter,
        **motion_loras, "image_lora": NO_LORA, "image_lora_scale": 1.0,
        **defaults.settings(), "random_seed": True, "motion_scale": 0, "context_length": 0, "context_loop": False,
        "encoder": NO_LORA, "encoder_scale": 1.0, "first_keyframe": None, "last_keyframe": None,
        "controlnet": NO_LORA, "controlnet_scale": 1.0, "control_video": None,
        "prompt_schedule": "", "prompt_interpolation": "linear", "motion_strength": 1.0,
        "free_noise": False, "free_noise_length": 0, "free_noise_stride": 4, "video": None, "video_frames": "",
        "ip_adapter": NO_LORA, "ip_image": None, "ip_scale": 1.0, "preset": NO_LORA,
        "offload": OFFLOAD_OFF, "vae_slicing": False, "vae_tiling": False, "decode_chunk": 16,
    }


class Stops:
    """The running job's ``Stop`` of each browser session (or API client), so Stop, Cancel and a closed tab find it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_session: dict[str, Stop] = {}

    def start(self, session: str | None) -> Stop:
        stop = Stop()
        with self._lock:
            if session:
                self._by_session[session] = stop
        return stop

    def end(self, session: str | None, stop: Stop) -> None:
        with self._lock:
            if session and self._by_session.get(session) is stop:
                del self._by_session[session]

    def request(self, session: str | None) -> bool:
        with self._lock:
            stop = self._by_session.get(session or "")
        if stop is not None:
            stop.request()
        return stop is not None


@contextlib.contextmanager
def _examples_cache(folder: Path) -> Iterator[None]:
    # Gradio reads its examples cache folder from the environment when the examples are built; ours lives
    # with the outputs, so no stale cache from another models folder is ever shown and it goes with them.
    before = os.environ.get("GRADIO_EXAMPLES_CACHE")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("GRADIO_EXAMPLES_CACHE", None)
        else:
            os.environ["GRADIO_EXAMPLES_CACHE"] = before


def build_app(
    models: ModelsFolder,
    limits: Limits | None = None,
    cache: ModelCache | None = None,
    *,
    service: Service | None = None,
    cache_examples: str | bool = "eager",
) -> gr.Blocks:
    """The page for ``models`` under ``limits``, sampling with ``service`` (or a new one on ``cache``).

    ``cache_examples``: ``"eager"`` runs every example when the server starts and shows its output on a
    click; ``"lazy"`` runs one on its first click; False runs none.
    """
    cache = cache or ModelCache()
    limits = limits or Limits.for_device(cache.device)
    service = service or Service(models, limits, cache)
    defaults = page_defaults(models)
    schedulers = _scheduler_names()
    stops = Stops()
    start = _form_defaults(defaults, _first(models.names("base")), _first(models.names("adapter")))
    note = _motion_scale_note(models, start["adapter"])
    presets, presets_note = offered_presets(models)
    no_offload = offload_note(limits.device)

    # delete_cache: results are copied into Gradio's cache; drop them after a day so the disk stays bounded.
    with gr.Blocks(title="motionkit", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown("## motionkit: animate an image\nDrop in a first frame (or leave it empty for text-to-video), describe the motion, press Generate.")
        with gr.Accordion("About these models and this server", open=False):
            gr.Markdown(_about(models, defaults, limits))
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=340):
                image = gr.Image(label="First frame (optional)", type="filepath", sources=["upload", "clipboard"], height=220)
                prompt = gr.Textbox(label="Prompt", lines=2, placeholder="what the video shows")
                with gr.Row(elem_id="generate-row"):
                    generate = gr.Button("Generate", variant="primary", scale=3)
                    stop = gr.Button("Stop", variant="stop", interactive=False, scale=1)
                negative = gr.Textbox(label="Negative prompt", value=start["negative_prompt"], placeholder="what to steer away from")
                with gr.Row():
                    bases, adapters = models.names("base"), models.names("adapter")
                    base = gr.Dropdown(bases, value=start["base"], label="Base checkpoint")
                    adapter = gr.Dropdown(adapters, value=start["adapter"], label="Motion adapter")
                with gr.Accordion("Settings", open=True):
                    with gr.Row():
                        frames = gr.Number(start["frames"], precision=0, label="Frames", info=f"1 to {limits.max_frames}")
                        steps = gr.Number(start["steps"], precision=0, label="Steps", info=f"1 to {limits.max_steps}")
                        fps = gr.Number(start["fps"], label="fps", info=f"frames per second, up to {MAX_FPS:g}")
                    with gr.Row():
                        sides = f"multiple of 8, {MIN_SIDE} to {limits.max_size}"
                        width = gr.Number(start["width"], precision=0, label="Width", info=sides)
                        height = gr.Number(start["height"], precision=0, label="Height", info=sides)
                    with gr.Row():
                        guidance = gr.Slider(0, MAX_GUIDANCE, value=start["guidance"], step=0.5, label="Guidance")
                        scheduler = gr.Dropdown(schedulers, value=start["scheduler"] if start["scheduler"] in schedulers else schedulers[0], label="Scheduler")
                    with gr.Row():
                        seed = gr.Number(start["seed"], precision=0, label="Seed", info=f"0 to {MAX_SEED}; the one used is shown here")
                        random_seed = gr.Checkbox(True, label="New random seed each run")
                    preset = gr.Dropdown(
                        [NO_LORA, *presets], value=NO_LORA, label="Few-step preset", interactive=bool(presets),
                        info="sets scheduler, steps and guidance for AnimateLCM / AnimateDiff-Lightning modules",
                    )
                    preset_note = gr.Markdown(presets_note, visible=bool(presets_note))
                with gr.Accordion("Fidelity and motion", open=True):
                    with gr.Row():
                        strength = gr.Slider(
                            MIN_STRENGTH, 1.0, value=start["strength"], step=0.05, label="Strength",
                            info="image- or video-to-video: lower keeps the frames closer to the source; 1 runs the whole schedule",
                        )
                        anchor = gr.Checkbox(start["anchor_first_frame"], label="Anchor frame 0 to the image")
                    image_guidance = gr.Dropdown(
                        list(IMAGE_GUIDANCE), value=start["image_guidance"], label="Image guidance",
                        info="image-to-video: pia guides on the text alone; svd also towards the image, ramped over frames",
                    )
                    image_inversion = gr.Slider(
                        0, 1, value=start["image_inversion"], step=0.05, label="Image inversion",
                        info="image-to-video: share of each frame's starting noise from the image's inversion; higher keeps its layout, moves less",
                    )
                    unfamiliar = gr.Checkbox(
                        start["unfamiliar_images"], label="Photo settings for unfamiliar images",
                        visible=defaults.unfamiliar_rule is not None, info=_unfamiliar_note(defaults.unfamiliar_rule),
                    )
                    motion_strength = gr.Slider(
                        0, MAX_MOTION_STRENGTH, value=start["motion_strength"], step=0.05, label="Motion strength",
                        info="any adapter: 1 as trained, 0 no motion, lower calmer, higher livelier",
                    )
                    noise_correlation = gr.Slider(
                        0, 0.95, value=start["noise_correlation"], step=0.05, label="Noise correlation",
                        info="text-to-video: starting noise shared between frames; higher keeps one scene, 0 independent frames",
                    )
                    frame_noise_means = gr.Dropdown(
                        list(FRAME_NOISE_MEANS), value=start["frame_noise_means"], label="Frame noise means",
                        info="text-to-video: shared gives every frame one brightness; drawn as diffusers; zero a neutral one",
                    )
                    free_init = gr.Slider(
                        0, MAX_FREE_INIT, value=start["free_init"], step=1, label="FreeInit passes",
                        info="text-to-video: each pass starts from the last one's low frequencies; steadier frames at that many times the cost, 0 or 1 off",
                    )
                    motion_scale = gr.Slider(
                        0, 8, value=0, step=1, label="Motion scale", visible=note is None,
                        info="PIA presets: 0-2 more motion, 3-5 looping, 6-8 style transfer",
                    )
                    motion_note = gr.Markdown(_motion_note(note), visible=note is not None)
                with gr.Accordion("Prompt travel", open=False):
                    prompt_schedule = gr.Textbox(
                        label="Prompt schedule", lines=3, placeholder=SCHEDULE_EXAMPLE,
                        info="KEY: PROMPT, separated by | or new lines; KEY a frame (8, -1 from the end) or a fraction (0.5, 50%); "
                        "KEY@WEIGHT weighs a prompt. Used instead of the Prompt box (leave that empty)",
                    )
                    prompt_interpolation = gr.Dropdown(["linear", "slerp"], value="linear", label="Between keys")
                with gr.Accordion("Long videos and loops", open=False):
                    with gr.Row():
                        context_length = gr.Number(0, precision=0, label="Context length", info="frames per window; 0: all at once")
                        loop = gr.Checkbox(False, label="Loop (windows wrap around the end)")
                    with gr.Row():
                        free_noise = gr.Checkbox(False, label="FreeNoise (long videos)", info="rescheduled noise, windowed motion modules")
                        free_noise_length = gr.Number(0, precision=0, label="FreeNoise window", info="frames; 0: the adapter's table")
                        free_noise_stride = gr.Number(4, precision=0, label="FreeNoise stride", info="frames between windows")
                with gr.Accordion("Video-to-video", open=False):
                    source_video = gr.File(
                        label="Source video (mp4, gif or webp) to restyle; Strength sets how far",
                        file_types=list(VIDEO_UPLOAD_SUFFIXES), type="filepath",
                    )
                    video_frames = gr.Textbox(
                        label="Source frames", placeholder="START:END, e.g. 0:48 or 24: (empty: from the start)",
                        info="source frames to use, END exclusive; Frames are picked from them at the output fps",
                    )
                with gr.Accordion("Image prompt (IP-Adapter)", open=False):
                    with gr.Row():
                        ip_adapter = gr.Dropdown(_choices(models, "ip_adapter"), value=NO_LORA, label="IP-Adapter")
                        ip_scale = gr.Slider(-2, 2, value=1.0, step=0.05, label="IP-Adapter scale")
                    ip_image = gr.Image(label="Reference image", type="filepath", sources=["upload", "clipboard"], height=160)
                with gr.Accordion("Keyframes and control", open=False):
                    gr.Markdown(
                        "A keyframe encoder (SparseCtrl) pins frames to images: the first keyframe defaults to the "
                        "first frame above, the last one goes on the last frame. A ControlNet follows a control "
                        "video (depth, edges, pose...) with exactly one frame per output frame. Use one or the other."
                    )
                    with gr.Row():
                        encoder = gr.Dropdown(_choices(models, "encoder"), value=NO_LORA, label="Keyframe encoder (SparseCtrl)")
                        encoder_scale = gr.Slider(-2, 2, value=1.0, step=0.05, label="Encoder scale")
                    with gr.Row():
                        first_keyframe = gr.Image(label="First keyframe", type="filepath", sources=["upload", "clipboard"], height=160)
                        last_keyframe = gr.Image(label="Last keyframe", type="filepath", sources=["upload", "clipboard"], height=160)
                    with gr.Row():
                        controlnet = gr.Dropdown(_choices(models, "controlnet"), value=NO_LORA, label="ControlNet")
                        controlnet_scale = gr.Slider(-2, 2, value=1.0, step=0.05, label="ControlNet scale")
                    control_video = gr.File(
                        label="Control video (mp4, gif or webp; one frame per output frame)",
                        file_types=list(VIDEO_UPLOAD_SUFFIXES), type="filepath",
                    )
                lora_inputs: list[Any] = []
                lora_names: list[gr.Dropdown] = []
                with gr.Accordion("LoRAs", open=False):
                    with gr.Row():
                        image_lora = gr.Dropdown(_choices(models, "image_lora"), value=NO_LORA, label="Image LoRA (style)")
                        image_lora_scale = gr.Slider(-2, 2, value=1.0, step=0.05, label="Image LoRA scale")
                    for slot in range(1, MOTION_LORA_SLOTS + 1):
                        with gr.Row():
                            name = gr.Dropdown(_choices(models, "lora"), value=NO_LORA, label=f"MotionLoRA {slot}")
                            scale = gr.Slider(-2, 2, value=1.0, step=0.05, label=f"MotionLoRA {slot} scale")
                        lora_names.append(name)
                        lora_inputs += [name, scale]
                    refresh = gr.Button("Rescan models folder", size="sm")
                with gr.Accordion("Memory (advanced)", open=False):
                    offload = gr.Dropdown(
                        [OFFLOAD_OFF, "model", "sequential"], value=OFFLOAD_OFF, label="Offload", interactive=no_offload is None,
                        info=f"not available: {no_offload}" if no_offload else "model: fast; sequential: least GPU memory, slow",
                    )
                    with gr.Row():
                        vae_slicing = gr.Checkbox(False, label="VAE slicing", info="decode one frame at a time")
                        vae_tiling = gr.Checkbox(False, label="VAE tiling", info="decode in tiles (large sizes)")
                        decode_chunk = gr.Number(16, precision=0, label="Decode chunk", info="frames the VAE sees at once")
            with gr.Column(scale=1, min_width=340, elem_id="result"):
                video = gr.Video(label="Video", format=None, autoplay=True, loop=True, interactive=False, height=360)
                summary = gr.Markdown("The video appears here.", label="Summary")
                downloads = gr.File(label="Downloads: mp4, gif and the settings record (JSON)", file_count="multiple", interactive=False)

        by_name = {
            "image": image, "prompt": prompt, "negative_prompt": negative, "base": base, "adapter": adapter,
            **{f"motion_lora_{i}{part}": lora_inputs[2 * (i - 1) + (part == "_scale")]
               for i in range(1, MOTION_LORA_SLOTS + 1) for part in ("", "_scale")},
            "image_lora": image_lora, "image_lora_scale": image_lora_scale, "scheduler": scheduler,
            "frames": frames, "width": width, "height": height, "steps": steps, "guidance": guidance, "seed": seed,
            "random_seed": random_seed, "strength": strength, "anchor_first_frame": anchor, "image_guidance": image_guidance,
            "image_inversion": image_inversion, "unfamiliar_images": unfamiliar, "motion_scale": motion_scale, "context_length": context_length, "context_loop": loop, "fps": fps,
            "encoder": encoder, "encoder_scale": encoder_scale, "first_keyframe": first_keyframe,
            "last_keyframe": last_keyframe, "controlnet": controlnet, "controlnet_scale": controlnet_scale,
            "control_video": control_video, "prompt_schedule": prompt_schedule, "prompt_interpolation": prompt_interpolation,
            "motion_strength": motion_strength, "noise_correlation": noise_correlation,
            "frame_noise_means": frame_noise_means, "free_init": free_init, "free_noise": free_noise, "free_noise_length": free_noise_length,
            "free_noise_stride": free_noise_stride, "video": source_video, "video_frames": video_frames,
            "ip_adapter": ip_adapter, "ip_image": ip_image, "ip_scale": ip_scale, "preset": preset,
            "offload": offload, "vae_slicing": vae_slicing, "vae_tiling": vae_tiling, "decode_chunk": decode_chunk,
        }
        inputs = [by_name[field] for field in FORM]
        outputs = [video, summary, downloads, seed]

        def shown(result: Any) -> list[Any]:
            files = [str(result.mp4), str(result.gif), str(result.record)]
            return [str(result.mp4), result.summary, files, result.seed]

        async def run(*args: Any) -> list[Any]:
            *values, request, progress = args  # Gradio passes the form, then its Request and Progress
            form = dict(zip(FORM, values))
            session = getattr(request, "session_hash", None)
            job_stop = stops.start(session)

            def report(done: int, total: int, what: str) -> None:
                progress((done, total), desc=what)

            try:
                # Sampling runs in a worker thread; a cancelled job (Stop, a client's cancel) tells it to stop.
                result = await asyncio.to_thread(service.generate, form, report, job_stop)
            except asyncio.CancelledError:
                job_stop.request()
                logger.info("stopped: the job was cancelled")
                raise
            except Stopped as err:
                logger.info("stopped: %s", err)
                raise gr.Error(service.public_message(err), print_exception=False, title="Stopped") from None
            except (MotionkitError, FileNotFoundError) as err:
                message = service.public_message(err)
                logger.info("refused: %s", message)
                raise gr.Error(message, print_exception=False) from None
            except Exception as err:
                _failed(err)
            finally:
                stops.end(session, job_stop)
            return shown(result)

        _with_signature(run, FORM)

        busy = generate.click(
            lambda: [gr.Button("Generating...", interactive=False), gr.Button(interactive=True)],
            outputs=[generate, stop], js=SCROLL_TO_RESULT, queue=False, api_name=False,
        )
        # preprocess=False: the raw values reach Service, which checks every one of them itself (dropdown
        # names against the listing, numbers against the limits, the upload's size and pixels before decoding).
        sampling = busy.then(run, inputs=inputs, outputs=outputs, api_name="generate", preprocess=False)
        def idle() -> list[Any]:
            return [gr.Button("Generate", interactive=True), gr.Button(interactive=False)]

        # The page skips .then() after an error, so a refusal restores the buttons through .failure().
        sampling.then(idle, outputs=[generate, stop], queue=False, api_name=False)
        sampling.failure(idle, outputs=[generate, stop], queue=False, api_name=False)

        def stop_run(request: gr.Request) -> None:
            stops.request(getattr(request, "session_hash", None))

        stop.click(stop_run, cancels=[sampling], queue=False, api_name="stop")
        demo.unload(stop_run)  # a closed or reloaded tab stops its job

        # The settings some base declares for itself follow the chosen base (a folder without any: none).
        base_fields = tuple(base_settings(models, start["base"])) if start["base"] is not None else ()

        def follow_base(name: Any) -> list[Any]:
            try:
                size = native_size(models.resolve("base", name))
                own = base_settings(models, name)
            except MotionkitError:
                size, own = None, {}
            sizes = [gr.Number(value=size), gr.Number(value=size)] if size else [gr.Number(), gr.Number()]
            return sizes + [gr.update(value=own[field]) if field in own else gr.update() for field in base_fields]

        def follow_adapter(name: Any) -> list[Any]:
            why = _motion_scale_note(models, name)
            return [gr.Slider(visible=why is None, value=0), gr.Markdown(_motion_note(why), visible=why is not None)]

        preset_fields = ("steps", "guidance", "scheduler", "adapter", "image_lora", "image_lora_scale")

        def follow_preset(name: Any) -> list[Any]:
            # The preset's settings, its adapter and LoRA fill the form; the server checks whatever is sent.
            from motionkit.pipeline.few_step import PRESETS

            filled = preset_form(models, name) if name in PRESETS else {}
            return [gr.update(value=filled[field]) if field in filled else gr.update() for field in preset_fields]

        base.change(
            follow_base, inputs=base, outputs=[width, height, *(by_name[field] for field in base_fields)],
            queue=False, api_name=False,
        )
        adapter.change(follow_adapter, inputs=adapter, outputs=[motion_scale, motion_note], queue=False, api_name=False)
        preset.change(
            follow_preset, inputs=preset, outputs=[by_name[field] for field in preset_fields],
            queue=False, api_name=False,
        )

        examples = _examples(models, defaults)
        if examples:

            def run_example(*values: Any) -> list[Any]:
                form = dict(zip(FORM, values))
                for upload in UPLOADS:
                    if isinstance(form[upload], str):  # an example's own file, from the server's side
                        form[upload] = Path(form[upload])
                return shown(service.generate(form))

            with _examples_cache(service.out_dir / "examples-cache"):
                gr.Examples(
                    [values for _, values in examples], inputs=inputs, outputs=outputs, fn=run_example,
                    example_labels=[label for label, _ in examples], label="Examples (every setting; click to see the result)",
                    cache_examples=bool(cache_examples), cache_mode=cache_examples if cache_examples else None,
                    api_name=False,
                )

        def rescan() -> list[Any]:
            names = {kind: models.names(kind) for kind in ("base", "adapter")}
            offered, offered_note = offered_presets(models)
            return [
                gr.Dropdown(choices=names["base"], value=_first(names["base"])),
                gr.Dropdown(choices=names["adapter"], value=_first(names["adapter"])),
                gr.Dropdown(choices=_choices(models, "image_lora"), value=NO_LORA),
                *[gr.Dropdown(choices=_choices(models, "lora"), value=NO_LORA) for _ in lora_names],
                gr.Dropdown(choices=_choices(models, "encoder"), value=NO_LORA),
                gr.Dropdown(choices=_choices(models, "controlnet"), value=NO_LORA),
                gr.Dropdown(choices=_choices(models, "ip_adapter"), value=NO_LORA),
                gr.Dropdown(choices=[NO_LORA, *offered], value=NO_LORA, interactive=bool(offered)),
                gr.Markdown(offered_note, visible=bool(offered_note)),
            ]

        refresh.click(
            rescan, outputs=[base, adapter, image_lora, *lora_names, encoder, controlnet, ip_adapter, preset, preset_note],
            api_name="rescan",
        )
    return demo


def _with_signature(fn: Any, names: tuple[str, ...]) -> None:
    """Give ``fn(*args)`` the signature ``(<one parameter per form field>, request, progress)``: Gradio passes
    the inputs positionally and inserts its special arguments where the signature names them (Request by
    annotation, Progress by default value)."""
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    fields = [inspect.Parameter(name, positional) for name in names]
    request = inspect.Parameter("request", positional, annotation=gr.Request)
    progress = inspect.Parameter("progress", positional, default=gr.Progress())
    fn.__signature__ = inspect.Signature([*fields, request, progress])
    fn.__annotations__ = {"request": gr.Request}


def _failed(err: Exception) -> Any:
    import torch

    if isinstance(err, torch.cuda.OutOfMemoryError):
        logger.info("refused: out of device memory")
        raise gr.Error("the device ran out of memory: ask for fewer frames, a smaller size or fewer steps", print_exception=False) from None
    # Unexpected: the details (and any server paths in them) go to the server log, not to the page.
    logger.exception("generation failed")
    raise gr.Error(f"generation failed on the server ({type(err).__name__}); try other settings", print_exception=False) from None


def _scheduler_names() -> list[str]:
    from motionkit.pipeline.schedulers import SCHEDULERS

    return list(SCHEDULERS)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def launch(
    models: ModelsFolder,
    limits: Limits | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    auth: list[tuple[str, str]] | None = None,
    open_access: bool = False,
    concurrency: int = 1,
    queue_size: int = 16,
    device: str | None = None,
    cache_examples: str | bool = "eager",
    service: Service | None = None,
    block: bool = True,
) -> gr.Blocks:
    """Build the page, put it behind a bounded queue and serve it; returns the running app when ``block`` is off.

    ``service``: sample with this one (its models, limits and cache) instead of a new one.

    A page reachable from other machines (a non-loopback ``host``, or ``share``) needs ``auth`` (user,
    password pairs, Gradio's login) unless ``open_access`` says it is meant to be open.
    """
    models.check()
    if concurrency < 1 or queue_size < 1:
        raise MotionkitError("--concurrency and --queue-size must be at least 1")
    if (share or host not in LOOPBACK) and not auth and not open_access:
        raise MotionkitError(
            f"serving on {'a public share link' if share else host} lets other machines use this server: "
            "pass --auth USER:PASSWORD (or --no-auth to serve it open on purpose)"
        )
    if service is None:
        cache = ModelCache(device=device)
        service = Service(models, limits or Limits.for_device(cache.device), cache)
    models, limits, cache = service.models, service.limits, service.cache
    demo = build_app(models, limits, cache, service=service, cache_examples=cache_examples)
    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    if block:
        # SIGTERM (a service manager, docker stop) shuts down like Ctrl-C, so the outputs are removed.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            share=share,
            auth=auth or None,
            max_file_size=limits.max_upload_bytes,
            prevent_thread_lock=not block,
            quiet=not block,
            css=CSS,
        )
    finally:
        if block:
            demo.close()
            service.close()
    return demo


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt

"""The Gradio app on the shipped tiny family, served on loopback: through gradio_client and in headless Chromium.

The server runs the page's defaults and the CPU limits the app ships with, so what is tested is what a
new user meets. The random demo models cover the models folder, the LoRA cache and the CLI.
"""

from __future__ import annotations

import io
import json
import logging
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from motionkit.app import Limits, ModelsFolder, write_demo_models  # noqa: E402
from motionkit.app.cache import ModelCache  # noqa: E402
from motionkit.app.defaults import DECLARATION, page_defaults  # noqa: E402
from motionkit.app.models import DEFAULT_MODELS_DIR  # noqa: E402
from motionkit.app.service import FORM, Service  # noqa: E402
from motionkit.app.ui import GENERIC_EXAMPLES_DIR, launch  # noqa: E402
from motionkit.cli import main  # noqa: E402
from motionkit.errors import MotionkitError  # noqa: E402
from motionkit.family import TinyFamily  # noqa: E402
from motionkit.video_io import read_video, write_video  # noqa: E402

# Gradio's queue statistics use pandas APIs that pandas 3 deprecates; not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
    # Examples leave the keyframe and control-video uploads empty (None is their "off"); Gradio notes it at launch.
    pytest.mark.filterwarnings("ignore:Examples will be cached but not all input components have example values"),
]
CHROMIUM = os.environ.get("MOTIONKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LIMITS = Limits.for_device("cpu", max_upload_bytes=64 * 1024, max_image_pixels=256 * 256)
WAIT_S = 60  # every wait on the server or the browser is bounded
APP_ADHERENCE_SEED = 0  # the seed motionkit demo uses by default
FAMILY = TinyFamily.find(DEFAULT_MODELS_DIR)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> ModelsFolder:
    return write_demo_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def family() -> ModelsFolder:
    return ModelsFolder(DEFAULT_MODELS_DIR)


@pytest.fixture(scope="module")
def service(family) -> Service:
    service = Service(family, LIMITS, ModelCache(device="cpu"))
    yield service
    service.close()


@pytest.fixture(scope="module")
def server(family, service):
    # Examples are cached when the server starts, as on a real launch.
    demo = launch(family, service=service, host="127.0.0.1", port=_free_port(), queue_size=8, block=False)
    try:
        yield demo
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return gradio_client.Client(
        server.local_url, verbose=False, analytics_enabled=False,
        download_files=str(tmp_path_factory.mktemp("downloads")), httpx_kwargs={"timeout": WAIT_S},
    )


NO_CONTROL = dict(
    encoder="(none)", encoder_scale=1.0, first_keyframe=None, last_keyframe=None,
    controlnet="(none)", controlnet_scale=1.0, control_video=None,
)
# Prompt travel, motion strength, FreeNoise, video-to-video, IP-Adapter, few-step preset, memory: all off.
PLAIN = dict(
    prompt_schedule="", prompt_interpolation="linear", motion_strength=1.0, free_noise=False, free_noise_length=0,
    free_noise_stride=4, video=None, video_frames="", ip_adapter="(none)", ip_image=None, ip_scale=1.0, preset="(none)",
    offload="off", vae_slicing=False, vae_tiling=False, decode_chunk=16,
)


def request(image: Path | None = None, **changes) -> list:
    """The generate endpoint's arguments in ``FORM`` order: the page's defaults, overridden by ``changes``."""
    defaults = page_defaults(ModelsFolder(DEFAULT_MODELS_DIR))
    values = dict(
        image=gradio_client.handle_file(str(image)) if image else None,
        prompt=FAMILY.prompt, negative_prompt="", base="tiny-base", adapter="tiny-motion",
        motion_lora_1="(none)", motion_lora_1_scale=1.0, motion_lora_2="(none)", motion_lora_2_scale=1.0,
        image_lora="(none)", image_lora_scale=1.0,
        **defaults.settings(), random_seed=False, motion_scale=0, context_length=0, context_loop=False,
        **NO_CONTROL, **PLAIN,
    )
    values.update(changes)
    assert set(values) == set(FORM)
    return [values[name] for name in FORM]


def generate(client, *args) -> tuple:
    return client.submit(*args, api_name="/generate").result(timeout=WAIT_S)


def refusal(client, *args) -> str:
    with pytest.raises(gradio_client.exceptions.AppError) as caught:
        generate(client, *args)
    return str(caught.value)


def vae_round_trip_psnr(pipe, image_path: Path) -> tuple[float, np.ndarray]:
    """The VAE's own reconstruction PSNR of the image as the pipeline sees it, and that image (uint8)."""
    from motionkit.metrics import psnr
    from motionkit.pipeline.image_input import prepare_image

    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    seen = prepare_image(image_path, size, size, pipe.image_processor).to(pipe.vae.device, pipe.vae.dtype)
    with torch.no_grad():
        recon = pipe.vae.decode(pipe.vae.encode(seen).latent_dist.mode()).sample

    def to_uint8(t):
        return ((t[0].float().permute(1, 2, 0).cpu().numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)

    image = to_uint8(seen)
    return psnr(to_uint8(recon), image), image




# --------------------------------------------------------------------------------------------- models folder, defaults


def test_listing_names_entries_and_refuses_anything_else(models):
    assert models.names("base") == ["tiny-sd"]
    assert models.names("adapter") == ["tiny-motion"]
    assert models.names("lora") == ["tiny-pan"]
    assert models.names("image_lora") == ["tiny-style"]
    assert models.names("encoder") == ["tiny-sparsectrl"] and models.names("controlnet") == ["tiny-controlnet"]
    assert ModelsFolder(DEFAULT_MODELS_DIR).names("encoder") == ["tiny-sparsectrl-rgb"]
    assert models.resolve("adapter", "tiny-motion") == models.root / "adapters" / "tiny-motion.safetensors"
    outside = str(models.root / "bases" / "tiny-sd")
    for name in ("../bases/tiny-sd", "tiny-sd/../tiny-sd", outside, "", None, ["tiny-sd"]):
        with pytest.raises(MotionkitError, match="unknown base"):
            models.resolve("base", name)


def test_defaults_come_from_the_models_and_their_declaration(models, family, tmp_path):
    tiny = page_defaults(family)  # declared in motionkit-app.json: the family's model card settings
    assert (tiny.frames, tiny.width, tiny.height, tiny.steps, tiny.guidance) == (8, 64, 64, 25, 4.0)
    assert tiny.anchor_first_frame and tiny.strength < 1.0
    assert "cannot draw" in tiny.about and tiny.examples[0].image == FAMILY.conditioning.resolve()
    from diffusers import AutoencoderKL, UNet2DConditionModel

    measured = page_defaults(models)  # no declaration: size from the base's configs, frames from the adapter
    base = models.resolve("base", "tiny-sd")
    unet, vae = UNet2DConditionModel.load_config(base / "unet"), AutoencoderKL.load_config(base / "vae")
    native = unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)  # as diffusers pipelines default
    assert (measured.width, measured.height, measured.frames) == (native, native, 16)
    (models.root / DECLARATION).write_text(json.dumps({"frames": "eight"}))
    try:
        with pytest.raises(MotionkitError, match="frames must be int"):
            page_defaults(models)
        (models.root / DECLARATION).write_text(json.dumps({"examples": [{"prompt": "x", "image": "../../etc/passwd"}]}))
        with pytest.raises(MotionkitError, match="not a file inside the models folder"):
            page_defaults(models)
    finally:
        (models.root / DECLARATION).unlink()


def test_limits_depend_on_the_device():
    cpu, gpu = Limits.for_device("cpu"), Limits.for_device("cuda")
    assert cpu.max_cost < gpu.max_cost and cpu.max_size < gpu.max_size and cpu.max_frames < gpu.max_frames
    assert Limits.for_device("cpu", max_cost=3.0, max_frames=None).max_cost == 3.0


def test_cli_explains_a_missing_models_folder_and_wants_a_login_off_loopback(models, tmp_path, capsys):
    assert main(["app", "--models-dir", str(tmp_path / "nowhere")]) == 2
    assert "no such models folder" in capsys.readouterr().err
    (tmp_path / "empty" / "bases").mkdir(parents=True)
    assert main(["app", "--models-dir", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no base in bases/" in err and len(err.strip().splitlines()) == 1
    assert main(["app", "--models-dir", str(models.root), "--host", "0.0.0.0", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--auth USER:PASSWORD" in err and len(err.strip().splitlines()) == 1
    assert main(["app", "--models-dir", str(models.root), "--auth", "alice", "--device", "cpu"]) == 2
    assert "USER:PASSWORD" in capsys.readouterr().err


def test_shipped_examples_are_small_images():
    files = sorted(GENERIC_EXAMPLES_DIR.glob("*.png"))
    assert files and all(f.stat().st_size < 50_000 for f in files)
    for f in files:
        with Image.open(f) as image:
            assert image.format == "PNG"


def test_models_are_loaded_once_and_loras_come_off_cleanly(models):
    cache = ModelCache(device="cpu")
    base, adapter = models.resolve("base", "tiny-sd"), models.resolve("adapter", "tiny-motion")
    pan = [(models.resolve("lora", "tiny-pan"), 1.5)]
    style = [(models.resolve("image_lora", "tiny-style"), 1.0)]

    def sample(loras, image_loras=()) -> np.ndarray:
        pipe = cache.pipeline(base, adapter, loras, scheduler="euler", image_loras=image_loras)
        generator = torch.Generator().manual_seed(0)
        out = pipe("a red ball", num_frames=4, height=64, width=64, num_inference_steps=2, generator=generator, output_type="np")
        return out.frames[0]

    with_lora = sample(pan)
    plain = sample([])
    assert np.abs(with_lora - plain).max() > 1e-4  # the MotionLoRA does act
    np.testing.assert_array_equal(sample(pan), with_lora)  # re-applied exactly
    styled = sample([], style)
    assert np.abs(styled - plain).max() > 1e-4  # so does the image LoRA
    np.testing.assert_array_equal(sample([]), plain)  # and both come off without a trace
    np.testing.assert_array_equal(sample([], style), styled)
    assert cache.loads == {"base": 1, "adapter": 1, "pipeline": 1}


# --------------------------------------------------------------------------------------------- through gradio_client


def test_generation_returns_the_frames_and_a_settings_record(client, service):
    video, summary, files, seed = generate(client, *request(FAMILY.conditioning, seed=5, fps=12))
    assert read_video(video).shape == (8, 64, 64, 3) and seed == 5
    mp4, gif, record = (Path(f) for f in files)
    assert read_video(mp4).shape == (8, 64, 64, 3) and gif.suffix == ".gif"
    made = json.loads(record.read_text())
    assert made["prompt"] == FAMILY.prompt and made["seed"] == 5
    assert (made["base"], made["adapter"]) == ("tiny-base", "tiny-motion")
    assert made["settings"]["strength"] == page_defaults(service.models).strength and made["settings"]["anchor_first_frame"]
    # The family declares the noise correlation its adapter trained with; the page opens with it.
    assert made["settings"]["noise_correlation"] == page_defaults(service.models).noise_correlation > 0
    assert made["fps"] == 12 and made["frames"] == 8
    assert "8 frames" in summary and "seed 5" in summary


def test_each_run_draws_its_own_seed_and_shows_it(client):
    _, first_summary, first_files, first_seed = generate(client, *request(random_seed=True, seed=0))
    _, _, _, second_seed = generate(client, *request(random_seed=True, seed=0))
    assert first_seed != second_seed  # 1 in 4 billion to collide
    assert f"seed {first_seed}" in first_summary and json.loads(Path(first_files[2]).read_text())["seed"] == first_seed
    _, _, again, seed = generate(client, *request(random_seed=False, seed=first_seed))  # the shown seed reproduces it
    assert seed == first_seed
    from motionkit.metrics import psnr

    # The same video up to float noise: runs in the server's worker threads still differ in the last bits now and
    # then (by a level or two of 255 after 25 steps; not yet traced), far closer than any other seed's video.
    first, repeat, other = (read_video(f) for f in (first_files[0], again[0], generate(client, *request(seed=first_seed + 1))[2][0]))
    assert psnr(repeat, first) > 30.0 and psnr(other, first) < 25.0


def test_requests_over_the_cost_budget_are_refused_with_what_to_lower(client):
    # Every setting is within its own ceiling; together they are over the CPU budget.
    frames, side, steps = LIMITS.max_frames, LIMITS.max_size, LIMITS.max_steps
    message = refusal(client, *request(frames=frames, width=side, height=side, steps=steps))
    assert f"allows {LIMITS.max_cost:g} on cpu (--max-cost)" in message
    assert "lower the frames, the size or the steps" in message
    video, *_ = generate(client, *request(frames=16, width=128, height=128, steps=2))  # within it: made
    assert read_video(video).shape == (16, 128, 128, 3)


def test_messages_escape_and_shorten_what_the_user_sent(client, caplog, capfd):
    caplog.set_level(logging.INFO, logger="motionkit.app")
    capfd.readouterr()
    markup = "<img src=x onerror=alert(1)><b>bold</b>" + "x" * 500
    message = refusal(client, *request(base=markup))
    assert "unknown base" in message and "<img" not in message and "<b>" not in message
    assert "&lt;img" in message and len(message) < 300  # escaped, and the echo is cut short
    logged = [r for r in caplog.records if r.name.startswith("motionkit.app")]
    assert len(logged) == 1 and logged[0].getMessage().startswith("refused: unknown base") and not logged[0].exc_info
    assert "Traceback" not in capfd.readouterr().err  # a refusal is no fault


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"frames": 40}, "frames 40 is over this server's limit of 32"),
        ({"width": 70}, "width must be a multiple of 8, got 70: use 64 or 72"),
        ({"width": 520}, "width 520 is over this server's limit of 512"),
        ({"steps": 51}, "steps 51 is over this server's limit of 50"),
        ({"frames": "many"}, "frames must be a number"),
        ({"strength": 0.0}, "strength must lie in 0.05..1"),
        ({"fps": 0}, "fps must lie in"),
        ({"random_seed": "yes"}, "random seed must be true or false"),
        ({"prompt": ""}, "no prompt given"),
        ({"scheduler": "magic"}, "unknown scheduler"),
        ({"base": "../bases/tiny-base"}, "unknown base"),
        ({"base": "/etc/passwd"}, "unknown base"),
        ({"adapter": "../../adapters/tiny-motion"}, "unknown adapter"),
        ({"motion_lora_2": "../loras/tiny-pan"}, "unknown lora"),
        ({"image_lora": "tiny-style"}, "unknown image lora"),
        ({"encoder": "../encoders/tiny-sparsectrl-rgb"}, "unknown encoder"),
        ({"controlnet": "tiny-controlnet"}, "unknown controlnet"),
        ({"encoder_scale": 3, "encoder": "tiny-sparsectrl-rgb"}, "scale of tiny-sparsectrl-rgb must lie in -2..2"),
        ({"encoder": "tiny-sparsectrl-rgb"}, "needs a keyframe: upload a first or last keyframe, or a first frame"),
        ({"motion_strength": 4.5}, "motion strength must lie in 0..4"),
        ({"motion_strength": "lots"}, "motion strength must be a number"),
        ({"noise_correlation": 1.0}, "noise correlation must lie in 0..1, below 1"),
        ({"noise_correlation": "some"}, "noise correlation must be a number"),
        ({"frame_noise_means": "mean"}, "frame noise means must be one of drawn, shared, zero"),
        ({"free_init": 5}, "FreeInit passes 5 is over this server's limit of 4"),
        ({"free_init": 1.5}, "FreeInit passes must be a whole number"),
        ({"free_init": -1}, "FreeInit passes must be at least 0"),
        ({"image_guidance": "both"}, "image guidance must be one of pia, svd"),
        ({"image_inversion": 1.5}, "image inversion must lie in 0..1"),
        ({"image_inversion": "half"}, "image inversion must be a number"),
        ({"free_noise": True, "free_noise_stride": 0}, "FreeNoise stride must lie in 1..the window"),
        ({"free_noise": "on"}, "FreeNoise must be true or false"),
        ({"prompt": "", "prompt_schedule": "0 a red ball"}, "bad prompt entry '0 a red ball': write KEY:PROMPT"),
        ({"prompt_interpolation": "cubic"}, "unknown prompt interpolation 'cubic': choose linear or slerp"),
        ({"video_frames": "0:8"}, "a source frame range needs a source video"),
        ({"ip_adapter": "ip-adapter_sd15"}, "unknown ip adapter 'ip-adapter_sd15': choose one listed by this server (none: put"),
        ({"preset": "lightning-4"}, "preset lightning-4 was asked for, but it is made for the motion module animatediff_lightning_4step"),
        ({"offload": "sequential"}, "offload sequential was asked for, but offload moves models between main memory and a CUDA GPU"),
        ({"vae_tiling": 1}, "VAE tiling must be true or false"),
        ({"decode_chunk": 0}, "decode chunk must be at least 1"),
    ],
)
def test_bad_requests_are_refused_with_a_message(client, changes, message):
    assert message in refusal(client, *request(**changes))


def test_motion_scale_is_refused_with_the_reason_on_an_adapter_without_pia_presets(client):
    message = refusal(client, *request(FAMILY.conditioning, motion_scale=3))
    assert "trained with a 'one_hot' mask" in message and "set it to 0" in message


def _png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def test_bad_uploads_are_refused_with_a_message(client, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image at all\n")
    assert "not an image this server reads" in refusal(client, *request(text))

    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(_png((96, 96))[:60])
    assert "damaged or truncated" in refusal(client, *request(truncated))

    # A flat 2048x2048 PNG is a few KB on disk and 12 MB decoded: refused from its header, naming the limit.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png((2048, 2048)))
    assert bomb.stat().st_size < LIMITS.max_upload_bytes
    assert "at most 0.1 megapixels: downscale it" in refusal(client, *request(bomb))

    big = tmp_path / "big.bmp"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > LIMITS.max_upload_bytes
    with pytest.raises(Exception, match="(?i)file size|too large|exceeds"):
        generate(client, *request(big))  # refused by the server's upload limit before any handler runs


def test_a_cancelled_job_stops_within_one_step_and_frees_the_sampler(client, service):
    before = service.last_run
    job = client.submit(*request(frames=32, steps=50), api_name="/generate")
    deadline = time.monotonic() + WAIT_S
    while service.last_run is before or service.last_run.steps_done < 2:
        assert time.monotonic() < deadline and not job.done()
        time.sleep(0.05)
    job.cancel()
    while service.cache.lock.locked() or not service.last_run.stopped:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    run = service.last_run
    assert run.steps_done - run.stop_requested_at <= 1 and run.steps_done < run.total
    start = time.monotonic()
    video, *_ = generate(client, *request())  # the next job does not wait for the cancelled one
    assert service.last_run.waited_s == 0.0 and time.monotonic() - start < WAIT_S / 2
    assert read_video(video).shape[0] == 8


# --------------------------------------------------------------------------------------------- the process


def test_sigterm_removes_the_outputs(models, tmp_path):
    """Served as ``motionkit app``: after a generation, SIGTERM shuts down like Ctrl-C and leaves no videos."""
    temp, gradio_temp, port = tmp_path / "tmp", tmp_path / "gradio", _free_port()
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(gradio_temp), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "motionkit", "app", "--models-dir", str(models.root), "--port", str(port),
               "--device", "cpu", "--cache-examples", "off"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 2 * WAIT_S
        while True:
            assert process.poll() is None and time.monotonic() < deadline
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        app_client = gradio_client.Client(url, verbose=False, download_files=False)
        form = dict(zip(FORM, request(prompt="a red ball", base="tiny-sd", steps=2, frames=4)))
        app_client.predict(*[form[name] for name in FORM], api_name="/generate")
        assert list(temp.glob("motionkit-app-*/*/*.mp4")) and list(gradio_temp.rglob("*.mp4"))
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-2000:]
    assert not list(temp.glob("motionkit-app-*")), "the app's outputs outlived SIGTERM"
    assert not list(gradio_temp.rglob("*.mp4")), "Gradio's copies of the videos outlived SIGTERM"


# --------------------------------------------------------------------------------------------- in a real browser


def _in_view(page, selector: str) -> bool:
    return page.evaluate(
        """sel => { const r = document.querySelector(sel).getBoundingClientRect();
                    return r.top >= 0 && r.top < window.innerHeight && r.height > 0; }""",
        selector,
    )


def _toast(page, text: str) -> None:
    page.get_by_text(text).first.wait_for()
    page.locator(".toast-close").first.click()


def test_page_in_chromium_as_a_new_user_meets_it(server, service, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (CI installs Debian's; set MOTIONKIT_CHROMIUM elsewhere)")
    sync_api = pytest.importorskip("playwright.sync_api")
    outside: list[str] = []

    def loopback_only(route) -> None:
        # The page must work offline: anything but the local server is refused and recorded.
        url = route.request.url
        if urlparse(url).hostname in ("127.0.0.1", "localhost") or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    def video_src() -> str:
        return page.evaluate("() => { const v = document.querySelector('#result video'); return v ? v.currentSrc : ''; }")

    def wait_for_new_video(old: str) -> None:
        page.wait_for_function(
            "old => { const v = document.querySelector('#result video'); return v && v.currentSrc !== old && v.duration > 0; }",
            arg=old,
        )

    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 800},
        )
        try:
            context.set_default_timeout(WAIT_S * 1000)
            context.route("**/*", loopback_only)
            page = context.new_page()
            page.goto(server.local_url)
            generate_button = page.get_by_role("button", name="Generate", exact=True)
            stop_button = page.get_by_role("button", name="Stop", exact=True)
            generate_button.wait_for()
            assert _in_view(page, "#generate-row")  # Generate is seen without scrolling
            assert page.locator("#result a[download]").count() == 0  # nothing to download before a video
            # Keyframes and control start folded away, with no encoder and no ControlNet chosen.
            page.get_by_text("Keyframes and control").first.click()
            assert page.get_by_label("Keyframe encoder (SparseCtrl)").input_value() == "(none)"
            assert page.get_by_label("ControlNet", exact=True).input_value() == "(none)"
            assert stop_button.is_disabled()
            # On a CPU server offload is offered greyed out, with the reason, not left to fail.
            page.get_by_text("Memory (advanced)").first.click()
            assert page.get_by_label("Offload").is_disabled()
            page.get_by_text("not available: offload moves models between main memory and a CUDA GPU").first.wait_for()
            page.get_by_text("Memory (advanced)").first.click()  # folded again, as a new user finds it
            # A base with settings of its own in the declaration brings them along; the first base gets its own back.
            strength = page.get_by_label("number input for Strength")
            assert strength.input_value() == "0.8"
            page.get_by_label("Base checkpoint").click()
            page.get_by_role("option", name="tiny-personalized").click()
            page.wait_for_function("box => box.value === '0.7'", arg=strength.element_handle())
            assert page.get_by_label("number input for Image inversion").input_value() == "0.2"
            page.get_by_label("Base checkpoint").click()
            page.get_by_role("option", name="tiny-base").click()
            page.wait_for_function("box => box.value === '0.8'", arg=strength.element_handle())
            assert page.get_by_label("number input for Image inversion").input_value() == "0"

            # The default click on the shipped in-world frame: fast, busy while it runs, the video in view.
            page.locator("input[type=file]").first.set_input_files(str(FAMILY.conditioning))
            page.locator("img[src*='file=']").first.wait_for()  # the upload is shown
            page.get_by_label("Prompt", exact=True).fill(FAMILY.prompt)
            # One fixed seed, so the adherence measured below is the same on every run (the seed draw has its own test).
            page.get_by_label("New random seed each run").uncheck()
            page.get_by_label("Seed", exact=True).fill(str(APP_ADHERENCE_SEED))
            start = time.monotonic()
            generate_button.click()
            page.get_by_role("button", name="Generating...").wait_for()
            wait_for_new_video("")
            page.get_by_text("sampled in").first.wait_for()
            seconds = time.monotonic() - start
            assert seconds < 60, f"the default click took {seconds:.0f} s on CPU"
            assert _in_view(page, "#result video")
            page.get_by_role("button", name="Generate", exact=True).wait_for()
            assert page.locator("#result a[download]").count() >= 3  # mp4, gif and the settings record
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)

            with urllib.request.urlopen(video_src(), timeout=WAIT_S) as response:
                (tmp_path / "default.mp4").write_bytes(response.read())

            # A typed over-limit value stays as typed and is refused with a message.
            frames_box = page.get_by_label("Frames", exact=True)
            frames_box.fill("40")
            generate_button.click()
            _toast(page, "frames 40 is over this server's limit of 32")
            assert frames_box.input_value() == "40"
            frames_box.fill("8")
            page.get_by_label("Width", exact=True).fill("70")
            page.get_by_role("button", name="Generate", exact=True).click()
            _toast(page, "width must be a multiple of 8, got 70: use 64 or 72")
            page.get_by_label("Width", exact=True).fill("64")

            # A prompt schedule goes through the same checks: a bad key is one line on the page, escaped.
            page.get_by_text("Prompt travel").first.click()
            page.get_by_label("Prompt", exact=True).fill("")
            schedule_box = page.get_by_label("Prompt schedule")
            schedule_box.fill("0: a red ball | <b>x</b>: a blue ball")
            page.get_by_role("button", name="Generate", exact=True).click()
            _toast(page, "bad prompt key '<b>x</b>'")
            schedule_box.fill("")
            page.get_by_label("Prompt", exact=True).fill(FAMILY.prompt)

            # Stop frees the server within one step.
            frames_box.fill("32")
            page.get_by_label("Steps", exact=True).fill("50")
            before = service.last_run
            page.get_by_role("button", name="Generate", exact=True).click()
            deadline = time.monotonic() + WAIT_S
            while service.last_run is before or service.last_run.steps_done < 2:
                assert time.monotonic() < deadline
                page.wait_for_timeout(50)  # not time.sleep: the routed requests only flow inside playwright calls
            stop_button.click()
            while service.cache.lock.locked() or not service.last_run.stopped:
                assert time.monotonic() < deadline
                page.wait_for_timeout(20)
            run = service.last_run
            assert run.steps_done - run.stop_requested_at <= 1 and run.steps_done < run.total
            page.get_by_role("button", name="Generate", exact=True).wait_for()
            assert stop_button.is_disabled()

            # An example sets every setting and shows its cached output at once.
            old = video_src()
            page.get_by_text("a red ball bouncing over a striped").first.click()
            wait_for_new_video(old)
            assert frames_box.input_value() == "8"

            # On a narrow screen the columns stack; Generate brings the video into view.
            page.set_viewport_size({"width": 480, "height": 800})
            page.evaluate("() => window.scrollTo(0, 0)")
            # The example switched the random seed off; its own seed would remake the cached video byte for byte.
            page.get_by_label("New random seed each run").check()
            old = video_src()
            page.get_by_role("button", name="Generate", exact=True).click()
            wait_for_new_video(old)
            assert _in_view(page, "#result video")
        finally:
            context.close()
    assert not outside, f"the page reached outside the loopback: {outside[:3]}"

    # The uploaded frame is reproduced (measured on the video the page played, once the page is closed).
    frames = read_video(tmp_path / "default.mp4")
    pipe = service.cache.pipeline(FAMILY.base, FAMILY.adapter)
    _, seen = vae_round_trip_psnr(pipe, FAMILY.conditioning)
    from motionkit.commands.demo import FRAME0_MARGIN_DB, measure_references
    from motionkit.metrics import psnr

    # Frames 1..N-1 are the image, not another picture: within FRAME0_MARGIN_DB of the example's own real clip
    # through the same VAE (and the page's mp4 encoding); frames of another picture score 11-14 dB. The family's
    # closer target (the real clip - PSNR_MARGIN_DB) is the demo verdict's to judge, and it reports this
    # example's shortfall there.
    _, shown = measure_references(pipe, FAMILY, frames=len(frames))
    reference = read_video(write_video(shown["world"], tmp_path / "real-clip.mp4", fps=8))
    target = float(np.mean([psnr(frame, seen) for frame in reference[1:]])) - FRAME0_MARGIN_DB
    score = float(np.mean([psnr(frame, seen) for frame in frames[1:]]))
    assert score >= target, f"frames 1..N-1 at {score:.2f} dB, target {target:.2f} dB (the real clip through the VAE - {FRAME0_MARGIN_DB:g} dB)"

    if os.environ.get("MOTIONKIT_UPDATE_SCREENSHOT"):
        # A 256-colour copy keeps the picture in the docs small.
        docs = Path(__file__).resolve().parent.parent / "docs" / "app-screenshot.png"
        with Image.open(shot) as image:
            image.convert("RGB").quantize(256).save(docs, optimize=True)
        assert docs.stat().st_size < 200_000


# --------------------------------------------------------------------------------------------- keyframes and control


def test_a_keyframe_encoder_changes_the_video_and_leaves_the_next_request_alone(client, tmp_path):
    plain_video, _, plain_files, _ = generate(client, *request(FAMILY.conditioning, seed=3))
    last = tmp_path / "last.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(last)
    video, summary, files, _ = generate(client, *request(
        FAMILY.conditioning, seed=3, encoder="tiny-sparsectrl-rgb", encoder_scale=0.8,
        last_keyframe=gradio_client.handle_file(str(last)),
    ))
    plain, keyed = read_video(plain_video).astype(float), read_video(video).astype(float)
    assert keyed.shape == plain.shape == (8, 64, 64, 3)
    assert np.abs(keyed - plain).mean() > 2.0  # the encoder steers every frame, not only float noise
    made = json.loads(Path(files[2]).read_text())
    assert made["encoder"] == {
        "name": "tiny-sparsectrl-rgb", "scale": 0.8,
        "keyframes": [{"index": 0, "image": "first frame"}, {"index": 7, "image": "uploaded"}],
    }
    assert made["controlnet"] is None and json.loads(Path(plain_files[2]).read_text())["encoder"] is None
    from motionkit.metrics import psnr

    # The control model is the request's alone: the next plain request is the plain video again.
    again, *_ = generate(client, *request(FAMILY.conditioning, seed=3))
    assert psnr(read_video(again), read_video(plain_video)) > 30.0


def test_keyframes_or_a_control_video_without_their_model_are_refused(client, tmp_path):
    key = tmp_path / "key.png"
    key.write_bytes(_png((64, 64)))
    message = refusal(client, *request(first_keyframe=gradio_client.handle_file(str(key))))
    assert "keyframes need a keyframe encoder" in message
    clip = tmp_path / "clip.gif"
    write_video(np.zeros((8, 64, 64, 3), np.uint8), clip, fps=8)
    assert "a control video needs a ControlNet" in refusal(client, *request(control_video=gradio_client.handle_file(str(clip))))


@pytest.fixture(scope="module")
def demo_service(models):
    service = Service(models, Limits.for_device("cpu"), ModelCache(device="cpu"))
    yield service
    service.close()


def demo_form(**changes) -> dict:
    """A small, fast request on the random demo models, straight to ``Service`` (uploads as paths)."""
    form = dict(zip(FORM, request(base="tiny-sd", frames=4, width=64, height=64, steps=2, seed=1)))
    form.update(changes)
    return form


def test_a_controlnet_follows_a_control_video_and_refuses_one_of_another_length(demo_service, tmp_path):
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    frames = np.stack([np.stack([np.roll(ramp, 8 * i)[None, :].repeat(64, 0)] * 3, axis=-1) for i in range(4)])
    clip = write_video(frames, tmp_path / "edges.gif", fps=8)
    plain = read_video(demo_service.generate(demo_form()).mp4).astype(float)
    result = demo_service.generate(demo_form(controlnet="tiny-controlnet", controlnet_scale=1.0, control_video=clip))
    controlled = read_video(result.mp4).astype(float)
    assert controlled.shape == plain.shape == (4, 64, 64, 3) and np.abs(controlled - plain).mean() > 1.0
    made = json.loads(result.record.read_text())
    assert made["controlnet"] == {"name": "tiny-controlnet", "scale": 1.0, "video": {"frames": 4, "width": 64, "height": 64}}
    assert made["encoder"] is None and demo_service.cache.loads["control"] == 1

    long_clip = write_video(np.concatenate([frames, frames]), tmp_path / "long.gif", fps=8)
    for clip_path, count in ((long_clip, "more than 4"), (write_video(frames[:3], tmp_path / "short.gif", fps=8), "3")):
        with pytest.raises(MotionkitError) as caught:
            demo_service.generate(demo_form(controlnet="tiny-controlnet", control_video=clip_path))
        message = str(caught.value)
        assert f"has {count} frames but the video to make has 4" in message and "exactly 4 frames" in message
        assert len(message.splitlines()) == 1
    with pytest.raises(MotionkitError, match="not both"):
        demo_service.generate(demo_form(controlnet="tiny-controlnet", control_video=clip, encoder="tiny-sparsectrl"))
    misfiled = demo_service.models.root / "encoders" / "misfiled"  # a ControlNet put among the encoders
    shutil.copytree(demo_service.models.root / "controlnets" / "tiny-controlnet", misfiled)
    try:
        with pytest.raises(MotionkitError) as caught:
            demo_service.generate(demo_form(encoder="misfiled", first_keyframe=FAMILY.conditioning))
        message = demo_service.public_message(caught.value)
        assert message == "misfiled is a ControlNet, not a SparseCtrl encoder: move it to controlnets/"
    finally:
        shutil.rmtree(misfiled)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    with pytest.raises(MotionkitError, match="upload an mp4, gif or webp file"):
        demo_service.generate(demo_form(controlnet="tiny-controlnet", control_video=notes))


def test_a_random_keyframe_encoder_runs_on_the_demo_models(demo_service, tmp_path):
    key = tmp_path / "key.png"
    Image.new("RGB", (64, 64), (30, 160, 90)).save(key)
    plain = read_video(demo_service.generate(demo_form()).mp4).astype(float)
    result = demo_service.generate(demo_form(encoder="tiny-sparsectrl", first_keyframe=key))
    keyed = read_video(result.mp4).astype(float)
    assert np.abs(keyed - plain).mean() > 1.0
    assert json.loads(result.record.read_text())["encoder"]["keyframes"] == [{"index": 0, "image": "uploaded"}]


# --------------------------------------------------------------------------------------------- what animators use every day


def _frames(path) -> np.ndarray:
    return read_video(path).astype(float)


# Equal videos are compared as their gifs: the same frames do not always encode to the same mp4 (a few
# levels apart here and there), while the gif of the same frames is the same file.


def test_prompt_travel_uses_the_command_lines_parser_and_is_recorded(service):
    from motionkit.pipeline.prompt_schedule import parse_schedule

    text = "0: a red ball bouncing | 50%@1.2: a red ball resting\n-1: a blue square resting"
    form = dict(zip(FORM, request(prompt="", prompt_schedule=text, seed=4, steps=6)))
    result = service.generate(form)
    made = json.loads(result.record.read_text())
    schedule = parse_schedule(text)  # the parser of --prompt-schedule: the record is what it reads
    assert made["prompt"] == str(schedule) and made["prompt_schedule"] == schedule.to_list(8)
    assert [key["frame"] for key in made["prompt_schedule"]] == [0, 4, 7]
    # The page's video is the pipeline's own with that schedule (same models, seed and settings).
    pipe = service.cache.pipeline(FAMILY.base, FAMILY.adapter)
    pipe.enable_free_init(num_iters=page_defaults(service.models).free_init)  # the family's, text-to-video's
    direct = pipe(
        prompt=schedule, negative_prompt="", num_frames=8, height=64, width=64, num_inference_steps=6, guidance_scale=4.0,
        noise_correlation=page_defaults(service.models).noise_correlation,  # the family's, text-to-video's
        frame_noise_means=page_defaults(service.models).frame_noise_means,
        generator=torch.Generator("cpu").manual_seed(4), output_type="np",
    ).frames[0]
    np.testing.assert_array_equal(read_video(result.gif), read_video(write_video(direct, service.out_dir / "direct.gif", fps=8)))
    plain = service.generate(dict(form, prompt="a red ball bouncing", prompt_schedule=""))
    assert np.abs(_frames(result.mp4)[-1] - _frames(plain.mp4)[-1]).mean() > 2.0  # the last key changes the end


@pytest.mark.parametrize(
    "schedule, message",
    [
        ("0: a red ball | x: a blue ball", "bad prompt key 'x': write KEY[@WEIGHT]:PROMPT"),
        ("0: a red ball | 20: a blue ball", "prompt key 20 is past the video's 8 frames"),
        ("4: a red ball | 2: a blue ball", "list keys in increasing frame order"),
        ("a red ball", "bad prompt entry 'a red ball': write KEY:PROMPT"),
        ("0: <b>red</b> | <i>1</i>: x", "bad prompt key '&lt;i&gt;1&lt;/i&gt;'"),
    ],
)
def test_a_bad_prompt_schedule_is_refused_in_one_escaped_line(service, schedule, message):
    with pytest.raises(MotionkitError) as caught:
        service.check(dict(zip(FORM, request(prompt="", prompt_schedule=schedule))))
    shown = service.public_message(caught.value)
    assert message in shown and len(shown.splitlines()) == 1 and "<" not in shown


def test_a_prompt_and_a_schedule_together_are_refused(client):
    message = refusal(client, *request(prompt_schedule="0: a red ball | -1: a blue ball"))
    assert "give a prompt or a prompt schedule, not both" in message


def test_noise_correlation_steadies_text_to_video_and_leaves_image_to_video_alone(service):
    from motionkit.metrics import warping_error

    def video(image=None, **changes):
        return read_video(service.generate(dict(zip(FORM, request(image, seed=2, steps=8, **changes)))).gif)

    # Text-to-video: frames that share their starting noise agree more (the family's declared 0.7 against 0).
    assert warping_error(video(noise_correlation=0.7)) < warping_error(video(noise_correlation=0.0))
    # Image-to-video samples independent noise whatever the slider says (the image ties the frames).
    np.testing.assert_array_equal(video(FAMILY.conditioning, noise_correlation=0.7), video(FAMILY.conditioning, noise_correlation=0.0))


def test_frame_noise_means_steady_text_to_video_and_image_guidance_reaches_image_to_video(service):
    from motionkit.metrics import mean_abs_frame_difference

    def video(image=None, **changes):
        return read_video(service.generate(dict(zip(FORM, request(image, seed=2, steps=8, **changes)))).gif)

    # Frames that share one noise mean keep one brightness: less flicker than each with its own (the declared value).
    assert page_defaults(service.models).frame_noise_means == "shared"
    assert mean_abs_frame_difference(video(frame_noise_means="shared")) < mean_abs_frame_difference(video(frame_noise_means="drawn"))
    # The setting is text-to-video's: an image job takes the means out whatever it says.
    np.testing.assert_array_equal(video(FAMILY.conditioning, frame_noise_means="shared"), video(FAMILY.conditioning, frame_noise_means="drawn"))
    # The family's image guidance (svd) is what image-to-video runs with; pia gives another video.
    assert page_defaults(service.models).image_guidance == "svd"
    assert not np.array_equal(video(FAMILY.conditioning), video(FAMILY.conditioning, image_guidance="pia"))


def test_free_init_samples_text_to_video_in_passes_and_leaves_image_to_video_alone(service):
    from motionkit.metrics import warping_error

    def made(image=None, **changes):
        result = service.generate(dict(zip(FORM, request(image, seed=2, steps=8, **changes))))
        return read_video(result.gif), json.loads(result.record.read_text()), service.last_run

    assert page_defaults(service.models).free_init == 2  # the family's declaration
    passes, record, run = made(free_init=2)
    assert record["settings"]["free_init"] == 2 and run.total == run.steps_done == 16  # progress counts both passes
    # The page's video is the pipeline's own with FreeInit's two passes (the family's other text-to-video settings).
    defaults = page_defaults(service.models)
    pipe = service.cache.pipeline(FAMILY.base, FAMILY.adapter)
    pipe.enable_free_init(num_iters=2)
    direct = pipe(
        prompt=FAMILY.prompt, negative_prompt="", num_frames=8, height=64, width=64, num_inference_steps=8,
        guidance_scale=defaults.guidance, noise_correlation=defaults.noise_correlation, frame_noise_means=defaults.frame_noise_means,
        generator=torch.Generator("cpu").manual_seed(2), output_type="np",
    ).frames[0]
    pipe.disable_free_init()
    np.testing.assert_array_equal(passes, read_video(write_video(direct, service.out_dir / "direct-free-init.gif", fps=8)))
    one, record, run = made(free_init=0)
    assert record["settings"]["free_init"] == 0 and run.total == 8
    assert warping_error(passes) < warping_error(one)  # the second pass starts from the first one's steady layout
    # An image job samples one pass whatever the slider says, and records that.
    still, record, run = made(FAMILY.conditioning, free_init=3)
    assert record["settings"]["free_init"] == 0
    np.testing.assert_array_equal(still, made(FAMILY.conditioning, free_init=0)[0])


def test_a_base_s_own_declared_settings_follow_it(family):
    from motionkit.app.defaults import base_settings

    # The family gives its personalized base its own image-to-video settings; the page's first base keeps the folder's.
    assert base_settings(family, "tiny-personalized") == {"image_inversion": 0.2, "strength": 0.7}
    assert base_settings(family, "tiny-base") == {"image_inversion": 0.0, "strength": 0.8}
    assert (page_defaults(family).strength, page_defaults(family, "tiny-personalized").strength) == (0.8, 0.7)
    assert page_defaults(family, "tiny-personalized").free_init == page_defaults(family).free_init  # the rest: the folder's


def test_free_init_passes_count_towards_the_cost(service):
    tight = Service(service.models, Limits.for_device("cpu", max_cost=3.0), service.cache)
    asked = dict(frames=8, width=128, height=128, steps=20)  # 2.6 frame-megapixel-steps a pass
    assert tight.check(dict(zip(FORM, request(**asked, free_init=0)))).settings.free_init == 0
    with pytest.raises(MotionkitError, match="x 3 FreeInit passes.*lower the frames, the size, the steps or the FreeInit passes"):
        tight.check(dict(zip(FORM, request(**asked, free_init=3))))
    # Image-to-video samples one pass: within the budget, and its settings say so.
    assert tight.check(dict(zip(FORM, request(FAMILY.conditioning, **asked, free_init=3)))).settings.free_init == 0


def test_image_inversion_reaches_image_to_video_alone(service):
    from motionkit.metrics import fit_image, psnr
    from motionkit.pipeline.image_input import load_image

    def video(image=None, **changes):
        return read_video(service.generate(dict(zip(FORM, request(image, seed=2, steps=8, **changes)))).gif)

    image = fit_image(load_image(FAMILY.conditioning), *video(FAMILY.conditioning).shape[1:3])
    # All of each frame's starting noise from the image's inversion: later frames nearer the image than with none.
    held, drawn = video(FAMILY.conditioning, image_inversion=1.0), video(FAMILY.conditioning, image_inversion=0.0)
    assert np.mean([psnr(f, image) for f in held[1:]]) > np.mean([psnr(f, image) for f in drawn[1:]])
    # Text-to-video has no image to invert: the slider does nothing there.
    np.testing.assert_array_equal(video(image_inversion=0.6), video(image_inversion=0.0))


def test_the_family_s_photo_example_keeps_the_photo(service):
    """The app's photo example (a CC0 photo, no scene of the world) declares the image inversion that keeps a
    photo's layout: its later frames stay at 15 dB or more against the photo (the family's photo target),
    above what the world's settings give, which repaint it into a world scene. The page's defaults reach the
    same: the family's rule for unfamiliar images reads the photo as one and picks the same settings."""
    from motionkit.metrics import fit_image, psnr
    from motionkit.pipeline.image_input import load_image

    (example,) = [e for e in page_defaults(service.models).examples if e.image is not None and e.image.suffix == ".jpg"]
    assert example.settings["image_inversion"] == 0.6 and example.settings["guidance"] == 1.5

    records = []

    def later_frames_psnr(**settings) -> float:
        result = service.generate(dict(zip(FORM, request(example.image, prompt=example.prompt, **settings))))
        records.append(json.loads(result.record.read_text()))
        frames = read_video(result.gif)
        photo = fit_image(load_image(example.image), *frames.shape[1:3])
        return float(np.mean([psnr(frame, photo) for frame in frames[1:]]))

    held = later_frames_psnr(**example.settings)
    world = later_frames_psnr(seed=example.settings["seed"], unfamiliar_images=False)
    assert held >= 15.0 and held > world + 1.0
    assert records[-1]["image_familiarity"] is None and records[-1]["settings"]["image_inversion"] == 0.0
    # The page's defaults, rule on: the photo reads as unfamiliar and gets the example's settings.
    assert later_frames_psnr(seed=example.settings["seed"]) == held
    familiarity = records[-1]["image_familiarity"]
    assert familiarity["applied"] and familiarity["denoising_error"] > familiarity["limit"]
    assert (records[-1]["settings"]["image_inversion"], records[-1]["settings"]["guidance"]) == (0.6, 1.5)
    # A world frame keeps the world's settings.
    result = service.generate(dict(zip(FORM, request(FAMILY.conditioning, seed=1, steps=4))))
    record = json.loads(result.record.read_text())
    assert not record["image_familiarity"]["applied"] and record["settings"]["image_inversion"] == 0.0
    assert "unlike the models' world" not in result.summary


def test_motion_strength_acts_on_an_adapter_without_a_pia_branch(service):
    from motionkit.metrics import mean_abs_frame_difference

    # tiny-motion's image branch is not PIA's, so motion scale is refused, but motion strength acts.
    with pytest.raises(MotionkitError, match="set it to 0"):
        service.check(dict(zip(FORM, request(FAMILY.conditioning, motion_scale=2))))
    flicker = {}
    for strength in (0.0, 1.5):
        result = service.generate(dict(zip(FORM, request(FAMILY.conditioning, seed=1, motion_strength=strength))))
        assert json.loads(result.record.read_text())["settings"]["motion_strength"] == strength
        flicker[strength] = mean_abs_frame_difference(read_video(result.mp4))
    # 0 denoises every frame on its own (docs/motion_strength.md: 47.6 vs 26.4 levels on 16 frames).
    assert flicker[0.0] > flicker[1.5] + 5.0
    with pytest.raises(MotionkitError, match="motion strength must lie in 0..4"):
        service.check(dict(zip(FORM, request(motion_strength=5))))


def test_free_noise_windows_a_long_video_and_the_next_request_is_plain_again(service):
    form = dict(zip(FORM, request(frames=16, steps=4, seed=2, strength=1.0)))
    plain = service.generate(form)
    windowed = service.generate(dict(form, free_noise=True, free_noise_length=8, free_noise_stride=4))
    settings = json.loads(windowed.record.read_text())["settings"]
    assert (settings["free_noise"], settings["free_noise_length"], settings["free_noise_stride"]) == (True, 8, 4)
    assert np.abs(_frames(windowed.mp4) - _frames(plain.mp4)).mean() > 2.0
    again = service.generate(form)  # the cached pipeline keeps no windows
    np.testing.assert_array_equal(read_video(again.gif), read_video(plain.gif))
    for changes, message in (
        (dict(free_noise_length=40), "FreeNoise window 40 is over this server's limit of 32"),
        (dict(free_noise_length=8, free_noise_stride=9), "FreeNoise stride must lie in 1..8"),
    ):
        with pytest.raises(MotionkitError, match=message):
            service.check(dict(form, free_noise=True, **changes))
    big = Service(service.models, Limits.for_device("cpu", max_frames=64), service.cache)
    with pytest.raises(MotionkitError, match="longer than this adapter's position table of 32: use at most 32"):
        big.check(dict(form, free_noise=True, free_noise_length=40))


def _clip(path: Path, count: int, fps: float = 8) -> Path:
    """A moving gradient clip of ``count`` 64x64 frames: frame i is the ramp shifted by 4 i pixels."""
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    frames = np.stack([np.stack([np.roll(ramp, 4 * i)[None, :].repeat(64, 0)] * 3, axis=-1) for i in range(count)])
    return write_video(frames, path, fps=fps)


def test_video_to_video_restyles_an_uploaded_clip_from_its_range(service, tmp_path):
    from motionkit.metrics import psnr

    source = _clip(tmp_path / "source.mp4", 12)
    clip = read_video(source)
    form = dict(zip(FORM, request(video=source, video_frames="2:", seed=3)))
    near = service.generate(dict(form, strength=0.2))
    made = json.loads(near.record.read_text())
    assert made["video"] == {"path": "uploaded", "source_fps": 8.0, "fps": 8.0, "start": 2, "end": None, "frames": 8,
                             "source_frames": [2, 9]}
    far = service.generate(dict(form, strength=1.0))
    # Strength sets how far: a fifth of the schedule stays close to source frames 2..9, the whole one does not.
    assert psnr(read_video(near.mp4), clip[2:10]) > psnr(read_video(far.mp4), clip[2:10]) + 3.0
    assert near.summary.startswith("8 frames") and "5 steps" in near.summary  # 25 x 0.2 steps run
    for changes, message in (
        (dict(video_frames="6:"), "the source video gives 6 frames at 8 fps in the range 6:, fewer than Frames (8)"),
        (dict(video_frames="20:"), "the source video: no frames in the source range 20:"),
        (dict(video_frames="a:b"), "bad source frame range 'a:b': give START:END"),
        (dict(video_frames="5:2"), "the source frame range 5:2 is empty or negative"),
        (dict(video=None), "a source frame range needs a source video"),
        (dict(image=FAMILY.conditioning), "a first frame and a source video do not mix"),
        (dict(video=tmp_path / "x.txt"), "the source video is not a video this server reads"),
    ):
        (tmp_path / "x.txt").write_text("no video")
        with pytest.raises(MotionkitError) as caught:
            service.generate(dict(form, **changes))
        shown = service.public_message(caught.value)
        assert message in shown and str(tmp_path) not in shown and len(shown.splitlines()) == 1


@pytest.fixture(scope="module")
def ip_models(models, tmp_path_factory):
    """The demo models with an h94-layout ``ip-adapters/`` folder (a tiny random IP-Adapter and CLIP image encoder)."""
    from motionkit.tiny import tiny_pipeline_components
    from tests.test_ip_adapter import write_ip_adapter

    written = write_ip_adapter(tmp_path_factory.mktemp("ip"), tiny_pipeline_components(seed=0)["unet"], "plain", ".safetensors")
    shutil.copytree(written.parent, models.root / "ip-adapters")
    return models


def test_an_ip_adapter_from_the_models_folder_steers_the_video_and_comes_off(ip_models, demo_service, tmp_path):
    assert ip_models.names("ip_adapter") == ["ip-adapter_0"]  # the image_encoder/ folder beside it is no entry
    reference = tmp_path / "reference.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(reference)
    plain = demo_service.generate(demo_form(steps=3))
    prompted = demo_service.generate(demo_form(steps=3, ip_adapter="ip-adapter_0", ip_image=reference, ip_scale=0.8))
    assert np.abs(_frames(prompted.mp4) - _frames(plain.mp4)).mean() > 1.0
    made = json.loads(prompted.record.read_text())
    assert made["ip_adapter"] == {"name": "ip-adapter_0", "scale": 0.8, "image": "uploaded"}
    rescaled = demo_service.generate(demo_form(steps=3, ip_adapter="ip-adapter_0", ip_image=reference, ip_scale=0.0))
    from motionkit.metrics import psnr

    # Scale 0 re-scales the loaded adapter to nothing (the image-attention path still runs: float noise only).
    assert psnr(read_video(rescaled.mp4), read_video(plain.mp4)) > 35.0 > psnr(read_video(prompted.mp4), read_video(plain.mp4))
    np.testing.assert_array_equal(read_video(demo_service.generate(demo_form(steps=3)).gif), read_video(plain.gif))
    assert demo_service.cache.loads["ip_adapter"] == 1  # loaded once, re-scaled, unloaded for the plain request
    for changes, message in (
        (dict(ip_image=reference), "a reference image needs an IP-Adapter"),
        (dict(ip_adapter="ip-adapter_0"), "the IP-Adapter 'ip-adapter_0' needs a reference image"),
        (dict(ip_adapter="../ip-adapters/ip-adapter_0", ip_image=reference), "unknown ip adapter"),
        (dict(ip_adapter="ip-adapter_0", ip_image=reference, ip_scale=3), "scale of ip-adapter_0 must lie in -2..2"),
    ):
        with pytest.raises(MotionkitError, match=re.escape(message)):
            demo_service.check(demo_form(**changes))
    encoder = ip_models.root / "ip-adapters" / "image_encoder"
    encoder.rename(encoder.with_name("elsewhere"))
    try:
        with pytest.raises(MotionkitError, match="no CLIP image encoder beside it: put the image_encoder/ folder"):
            demo_service.check(demo_form(ip_adapter="ip-adapter_0", ip_image=reference))
    finally:
        encoder.with_name("elsewhere").rename(encoder)


@pytest.fixture
def preset_models(models, tmp_path):
    """The demo models with a Lightning 2-step module and AnimateLCM's module and LoRA (named as released)."""
    root = tmp_path / "presets"
    shutil.copytree(models.root, root, ignore=shutil.ignore_patterns("ip-adapters"))
    adapter = root / "adapters" / "tiny-motion.safetensors"
    shutil.copy(adapter, root / "adapters" / "animatediff_lightning_2step_diffusers.safetensors")
    shutil.copy(adapter, root / "adapters" / "AnimateLCM_sd15_t2v.safetensors")
    return ModelsFolder(root)


def test_few_step_presets_are_offered_only_with_their_models(preset_models, models):
    from motionkit.app.presets import offered_presets

    offered, note = offered_presets(models)
    assert offered == [] and note == (
        "Not available with these models: animatelcm needs AnimateLCM_sd15_t2v.ckpt in adapters/; lightning-1, "
        "lightning-2, lightning-4, lightning-8 need animatediff_lightning_Nstep_diffusers.safetensors (N: their steps) in adapters/."
    )
    offered, note = offered_presets(preset_models)
    assert offered == ["lightning-2"] and "animatelcm needs its LoRA AnimateLCM_sd15_t2v_lora.safetensors in image-loras/" in note
    assert "lightning-1, lightning-4, lightning-8 need" in note
    shutil.copy(preset_models.root / "image-loras" / "tiny-style.safetensors",
                preset_models.root / "image-loras" / "AnimateLCM_sd15_t2v_lora.safetensors")
    offered, note = offered_presets(preset_models)
    assert offered == ["animatelcm", "lightning-2"] and "animatelcm" not in note
    from motionkit.app.presets import made_for
    from motionkit.pipeline.few_step import PRESETS

    assert not made_for(PRESETS["lightning-4"], Path("animatediff_lightning_14step.safetensors"))  # 14 is not 4


def test_a_few_step_preset_sets_its_scheduler_and_is_refused_with_another_adapter(preset_models):
    from motionkit.app.presets import preset_form

    service = Service(preset_models, Limits.for_device("cpu"), ModelCache(device="cpu"))
    try:
        lightning = "animatediff_lightning_2step_diffusers"
        # What choosing the preset fills in on the page, sent as it is.
        filled = preset_form(preset_models, "lightning-2")
        assert filled == {"scheduler": "euler", "steps": 2, "guidance": 1.0, "adapter": lightning}
        form = demo_form(preset="lightning-2", **filled)
        result = service.generate(form)
        made = json.loads(result.record.read_text())["settings"]
        assert made["preset"]["name"] == "lightning-2" and made["scheduler"] == "euler" and made["steps"] == 2
        assert service.cache._pipe.scheduler.config.timestep_spacing == "trailing"  # the preset's, not the base's
        for changes, message in (
            (dict(adapter="tiny-motion"), "made for the motion module animatediff_lightning_2step_diffusers.safetensors"),
            (dict(adapter="AnimateLCM_sd15_t2v", preset="animatelcm"), "needs its LoRA AnimateLCM_sd15_t2v_lora.safetensors"),
            (dict(preset="turbo"), "unknown preset 'turbo'"),
        ):
            with pytest.raises(MotionkitError, match=re.escape(message)):
                service.check(dict(form, **changes))
        shutil.copy(preset_models.root / "image-loras" / "tiny-style.safetensors",
                    preset_models.root / "image-loras" / "AnimateLCM_sd15_t2v_lora.safetensors")
        filled = preset_form(preset_models, "animatelcm")
        assert filled == {"scheduler": "lcm", "steps": 6, "guidance": 2.0, "adapter": "AnimateLCM_sd15_t2v",
                          "image_lora": "AnimateLCM_sd15_t2v_lora", "image_lora_scale": 0.8}
        made = json.loads(service.generate(demo_form(preset="animatelcm", **filled)).record.read_text())
        assert made["settings"]["preset"]["name"] == "animatelcm" and made["loras"] == [{"name": "AnimateLCM_sd15_t2v_lora", "scale": 0.8}]
    finally:
        service.close()


def test_memory_options_keep_the_video_and_offload_is_explained_off_gpu(demo_service):
    plain = demo_service.generate(demo_form())
    lean = demo_service.generate(demo_form(vae_slicing=True, vae_tiling=True, decode_chunk=1))
    from motionkit.metrics import psnr

    # Decoding a frame at a time changes float rounding only; the GIF's palette can turn that into a few pixels
    # of another palette entry, so the lean video equals the plain one up to those (well above 40 dB).
    lean_frames, plain_frames = read_video(lean.gif), read_video(plain.gif)
    assert lean_frames.shape == plain_frames.shape and psnr(lean_frames, plain_frames) > 40.0
    assert np.mean(lean_frames != plain_frames) < 0.01
    made = json.loads(lean.record.read_text())["settings"]
    assert (made["vae_slicing"], made["vae_tiling"], made["decode_chunk"], made["offload"]) == (True, True, 1, None)
    np.testing.assert_array_equal(read_video(demo_service.generate(demo_form()).gif), read_video(plain.gif))
    assert not demo_service.cache._pipe.vae.use_slicing and not demo_service.cache._pipe.vae.use_tiling
    with pytest.raises(MotionkitError) as caught:
        demo_service.check(demo_form(offload="model"))
    message = str(caught.value)
    assert "this server runs on cpu" in message and "set Offload to off" in message and len(message.splitlines()) == 1
    with pytest.raises(MotionkitError, match="unknown offload 'disk'"):
        demo_service.check(demo_form(offload="disk"))
    with pytest.raises(MotionkitError, match="decode chunk must be at least 1"):
        demo_service.check(demo_form(decode_chunk=0))


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_the_cache_offloads_and_undoes_it(models, mode):
    """Offload's hooks on the cached pipeline (on the CPU, where they move nothing): the same video, and gone after."""
    cache = ModelCache(device="cpu")
    base, adapter = models.resolve("base", "tiny-sd"), models.resolve("adapter", "tiny-motion")

    def sample(offload=None) -> np.ndarray:
        pipe = cache.pipeline(base, adapter, offload=offload)
        out = pipe("a red ball", num_frames=4, height=64, width=64, num_inference_steps=2,
                   generator=torch.Generator().manual_seed(0), output_type="np")
        return out.frames[0]

    plain = sample()
    if mode == "model":
        np.testing.assert_allclose(sample(mode), plain, atol=1e-6)
        np.testing.assert_allclose(sample(mode), plain, atol=1e-6)  # re-installed for the next request
        assert cache.loads["base"] == 1  # undone in place
    else:
        # Sequential hooks cannot run with the CPU as their execution device (see tests/test_memory.py): check
        # they are installed, and that leaving them rebuilds the pipeline from the files.
        pipe = cache.pipeline(base, adapter, offload=mode)
        assert {p.device.type for p in pipe.unet.parameters()} == {"meta"} and hasattr(pipe.vae, "_hf_hook")
        assert cache.pipeline(base, adapter, offload=mode) is pipe  # the same request keeps it
    np.testing.assert_array_equal(sample(), plain)
    assert not hasattr(cache._pipe.unet, "_hf_hook") and cache._offload is None
    assert cache.loads["base"] == (1 if mode == "model" else 2)


def test_choosing_a_preset_in_chromium_fills_the_form_and_runs(preset_models, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (CI installs Debian's; set MOTIONKIT_CHROMIUM elsewhere)")
    sync_api = pytest.importorskip("playwright.sync_api")
    service = Service(preset_models, Limits.for_device("cpu"), ModelCache(device="cpu"))
    demo = launch(preset_models, service=service, port=_free_port(), block=False, cache_examples=False)
    try:
        with sync_api.sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            )
            try:
                context.set_default_timeout(WAIT_S * 1000)
                page = context.new_page()
                page.goto(demo.local_url)
                page.get_by_text("animatelcm needs its LoRA AnimateLCM_sd15_t2v_lora.safetensors").first.wait_for()
                page.get_by_label("Few-step preset").click()
                page.get_by_role("option", name="lightning-2").click()
                steps = page.get_by_label("Steps", exact=True)
                page.wait_for_function("box => box.value === '2'", arg=steps.element_handle())
                assert page.get_by_label("Motion adapter").input_value() == "animatediff_lightning_2step_diffusers"
                assert page.get_by_label("Scheduler").input_value() == "euler"
                page.get_by_label("Prompt", exact=True).fill("a red ball")
                page.get_by_role("button", name="Generate", exact=True).click()
                page.get_by_text("2 steps, seed").first.wait_for()
            finally:
                context.close()
    finally:
        demo.close()
        service.close()

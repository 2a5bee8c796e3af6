"""The Gradio app, served on loopback with tiny random models: through gradio_client and in headless Chromium."""

from __future__ import annotations

import io
import os
import shutil
import socket
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
from motionkit.app.models import DEFAULT_MODELS_DIR  # noqa: E402
from motionkit.app.ui import EXAMPLES_DIR, launch  # noqa: E402
from motionkit.cli import main  # noqa: E402
from motionkit.errors import MotionkitError  # noqa: E402
from motionkit.video_io import read_video  # noqa: E402

# Gradio's queue statistics use pandas APIs that pandas 3 deprecates; not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]
CHROMIUM = os.environ.get("MOTIONKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LIMITS = Limits(max_frames=8, max_size=64, max_steps=2, max_upload_bytes=64 * 1024, max_image_pixels=256 * 256)
WAIT_S = 60  # every wait on the server or the browser is bounded


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> ModelsFolder:
    return write_demo_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server(models):
    demo = launch(models, LIMITS, host="127.0.0.1", port=_free_port(), queue_size=8, device="cpu", block=False)
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


@pytest.fixture(scope="module")
def first_frame(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("upload") / "first.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 96, dtype=np.uint8)[None, :, None], (96, 1, 3))).save(path)
    return path


def request(image: Path | None = None, **changes) -> list:
    """The generate endpoint's arguments, in order: small defaults, overridden by ``changes``."""
    values = dict(
        image=gradio_client.handle_file(str(image)) if image else None,
        prompt="a red ball", negative_prompt="", base="tiny-sd", adapter="tiny-motion",
        lora_1="(none)", lora_1_scale=1.0, lora_2="(none)", lora_2_scale=1.0,
        frames=4, width=64, height=64, steps=2, guidance=7.5, seed=3,
        scheduler="ddim", motion_scale=0, context_length=0,
    )
    values.update(changes)
    return list(values.values())


def generate(client, *args) -> tuple:
    return client.submit(*args, api_name="/generate").result(timeout=WAIT_S)


def refusal(client, *args) -> str:
    with pytest.raises(gradio_client.exceptions.AppError) as caught:
        generate(client, *args)
    return str(caught.value)


# --------------------------------------------------------------------------------------------- models folder


def test_listing_names_entries_and_refuses_anything_else(models):
    assert models.names("base") == ["tiny-sd"]
    assert models.names("adapter") == ["tiny-motion"]
    assert models.names("lora") == ["tiny-pan"]
    assert models.resolve("adapter", "tiny-motion") == models.root / "adapters" / "tiny-motion.safetensors"
    outside = str(models.root / "bases" / "tiny-sd")
    for name in ("../bases/tiny-sd", "tiny-sd/../tiny-sd", outside, "", None, ["tiny-sd"]):
        with pytest.raises(MotionkitError, match="unknown base"):
            models.resolve("base", name)


def test_cli_explains_a_missing_models_folder(tmp_path, capsys):
    assert main(["app", "--models-dir", str(tmp_path / "nowhere")]) == 2
    assert "no such models folder" in capsys.readouterr().err
    (tmp_path / "empty" / "bases").mkdir(parents=True)
    assert main(["app", "--models-dir", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no base in bases/" in err and len(err.strip().splitlines()) == 1
    if not DEFAULT_MODELS_DIR.is_dir():
        assert main(["app"]) == 2
        err = capsys.readouterr().err.strip()
        assert "--demo-models" in err and len(err.splitlines()) == 1


def test_shipped_examples_are_small_images():
    files = sorted(EXAMPLES_DIR.glob("*.png"))
    assert files and all(f.stat().st_size < 50_000 for f in files)
    for f in files:
        with Image.open(f) as image:
            assert image.format == "PNG"


# --------------------------------------------------------------------------------------------- through gradio_client


def test_generation_returns_the_requested_frames(client, first_frame):
    video, summary, mp4, gif = generate(client, *request(first_frame, frames=6, lora_1="tiny-pan", lora_1_scale=0.5))
    assert read_video(video).shape == (6, 64, 64, 3)
    assert read_video(mp4).shape == (6, 64, 64, 3)
    assert Path(gif).suffix == ".gif" and read_video(gif).shape[1:] == (64, 64, 3)
    assert "6 frames" in summary and "seed 3" in summary


def test_models_are_loaded_once_and_loras_come_off_cleanly(models):
    cache = ModelCache(device="cpu")
    base, adapter = models.resolve("base", "tiny-sd"), models.resolve("adapter", "tiny-motion")
    pan = [(models.resolve("lora", "tiny-pan"), 1.5)]

    def sample(loras) -> np.ndarray:
        pipe = cache.pipeline(base, adapter, loras, scheduler="euler")
        generator = torch.Generator().manual_seed(0)
        out = pipe("a red ball", num_frames=4, height=64, width=64, num_inference_steps=2, generator=generator, output_type="np")
        return out.frames[0]

    with_lora = sample(pan)
    plain = sample([])
    assert np.abs(with_lora - plain).max() > 1e-4  # the LoRA does act
    np.testing.assert_array_equal(sample(pan), with_lora)  # re-applied exactly
    np.testing.assert_array_equal(sample([]), plain)  # and taken off without a trace
    assert cache.loads == {"base": 1, "adapter": 1, "pipeline": 1}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"frames": 9}, "frames 9 is over this server's limit of 8"),
        ({"width": 72}, "width 72 is over this server's limit of 64"),
        ({"steps": 3}, "steps 3 is over this server's limit of 2"),
        ({"frames": "many"}, "frames must be a number"),
        ({"prompt": ""}, "no prompt given"),
        ({"scheduler": "magic"}, "unknown scheduler"),
        ({"base": "../bases/tiny-sd"}, "unknown base"),
        ({"base": "/etc/passwd"}, "unknown base"),
        ({"adapter": "../../adapters/tiny-motion.safetensors"}, "unknown adapter"),
        ({"lora_2": "../loras/tiny-pan"}, "unknown lora"),
    ],
)
def test_bad_requests_are_refused_with_a_message(client, changes, message):
    assert message in refusal(client, *request(**changes))


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

    # A flat 2048x2048 PNG is a few KB on disk and 12 MB decoded: refused from its header.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png((2048, 2048)))
    assert bomb.stat().st_size < LIMITS.max_upload_bytes
    assert "megapixels: downscale it" in refusal(client, *request(bomb))

    big = tmp_path / "big.bmp"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > LIMITS.max_upload_bytes
    with pytest.raises(Exception, match="(?i)file size|too large|exceeds"):
        generate(client, *request(big))  # refused by the server's upload limit before any handler runs


def test_the_app_keeps_serving_after_errors(client):
    refusal(client, *request(frames=99))
    video, *_ = generate(client, *request(frames=4, seed=11))
    assert read_video(video).shape[0] == 4


# --------------------------------------------------------------------------------------------- in a real browser


def test_page_generates_a_playable_video_in_chromium(server, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (CI installs Debian's; set MOTIONKIT_CHROMIUM elsewhere)")
    sync_api = pytest.importorskip("playwright.sync_api")
    upload = tmp_path / "upload.png"
    shutil.copyfile(EXAMPLES_DIR / "sunset.png", upload)
    outside: list[str] = []

    def loopback_only(route) -> None:
        # The page must work offline: anything but the local server is refused and recorded.
        url = route.request.url
        if urlparse(url).hostname in ("127.0.0.1", "localhost") or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            context.set_default_timeout(WAIT_S * 1000)
            context.route("**/*", loopback_only)
            page = context.new_page()
            page.goto(server.local_url)
            generate_button = page.get_by_role("button", name="Generate", exact=True)
            generate_button.click()  # nothing filled in: the refusal shows in the page as one message
            page.get_by_text("no prompt given: describe the video in a few words").first.wait_for()
            page.locator(".toast-close").first.click()

            page.locator("input[type=file]").first.set_input_files(str(upload))
            page.locator("img[src*='upload']").first.wait_for()  # the upload is shown before generating
            page.get_by_label("Prompt", exact=True).fill("the sun sinking into a calm sea")
            generate_button.click()
            page.wait_for_function("() => { const v = document.querySelector('video'); return v && v.duration > 0; }")
            assert page.evaluate("() => document.querySelector('video').duration") > 0
            page.get_by_text("sampled in").first.wait_for()
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)

            first_video = page.evaluate("() => document.querySelector('video').currentSrc")
            page.get_by_text("a red ball bouncing on a lawn").first.click()  # an example fills the form...
            page.wait_for_function(
                "() => [...document.querySelectorAll('textarea')].some(t => t.value.startsWith('a red ball bouncing'))"
            )
            generate_button.click()  # ...and its image is a valid upload
            page.wait_for_function(
                "old => { const v = document.querySelector('video'); return v && v.currentSrc !== old && v.duration > 0; }",
                arg=first_video,
            )
        finally:
            context.close()
    assert shot.stat().st_size > 10_000
    assert not outside, f"the page reached outside the loopback: {outside[:3]}"
    if os.environ.get("MOTIONKIT_UPDATE_SCREENSHOT"):
        # A 256-colour copy keeps the picture in the docs small.
        docs = Path(__file__).resolve().parent.parent / "docs" / "app-screenshot.png"
        with Image.open(shot) as image:
            image.convert("RGB").quantize(256).save(docs, optimize=True)
        assert docs.stat().st_size < 200_000

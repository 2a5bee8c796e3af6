"""How familiar an image is to the image model, and a models folder's settings for unfamiliar images
(motionkit.pipeline.image_familiarity, MotionPipeline.image_denoising_error, motionkit animate)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from motionkit.cli import main
from motionkit.errors import MotionkitError
from motionkit.model_defaults import DECLARATION, read_declaration
from motionkit.pipeline.image_familiarity import (
    DECLARED_KEY,
    UnfamiliarImages,
    denoising_error,
    rule_limits,
    unfamiliar_images_rule,
)
from motionkit.video_io import sidecar_path

FAMILY = Path(__file__).resolve().parents[1] / "motionkit" / "assets" / "tiny-family"
PHOTOS = Path(__file__).resolve().parents[1] / "motionkit" / "assets" / "examples" / "photos"


def _alphas() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def test_the_error_is_zero_for_a_perfect_predictor_and_one_for_a_blind_one():
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    alphas = _alphas()

    def perfect(x: torch.Tensor, t: int) -> torch.Tensor:  # knows the clean latent: the noise follows exactly
        a = alphas[t].float()
        return (x - a.sqrt() * latent) / (1 - a).sqrt()

    assert denoising_error(perfect, latent, alphas, timestep=500, draws=3) < 1e-10
    blind = denoising_error(lambda x, t: torch.zeros_like(x), latent, alphas, draws=64)
    assert abs(blind - 1.0) < 0.05  # the noise's own mean square
    # Seeded: the same draws every call, other draws with another seed.
    half = lambda x, t: 0.5 * perfect(x, t)  # noqa: E731
    assert denoising_error(half, latent, alphas, seed=3) == denoising_error(half, latent, alphas, seed=3)
    assert denoising_error(half, latent, alphas, seed=3) != denoising_error(half, latent, alphas, seed=4)


def test_the_error_refuses_no_draws_and_a_timestep_off_the_schedule():
    latent = torch.zeros(1, 4, 2, 2)
    with pytest.raises(MotionkitError, match="at least one noise draw"):
        denoising_error(lambda x, t: x, latent, _alphas(), draws=0)
    with pytest.raises(MotionkitError, match=r"timestep must lie in \[0, 999\], got 1000"):
        denoising_error(lambda x, t: x, latent, _alphas(), timestep=1000)


@pytest.fixture(scope="module")
def family_pipe():
    from motionkit.pipeline import MotionPipeline

    pipe = MotionPipeline.from_pretrained(FAMILY / "bases" / "tiny-base", FAMILY / "adapters" / "tiny-motion")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_family_s_limit_keeps_its_world_and_flags_photos_that_it_repaints(family_pipe):
    """The limit the tiny family declares: world frames it never saw stay under it, the two photos its world
    defaults repaint (coffee, astronaut: under 15 dB) are over it. Deterministic for an image."""
    from motionkit.data.world import random_specs
    from motionkit.data.world.scene import render_clip

    limit = unfamiliar_images_rule(read_declaration(FAMILY).settings[DECLARED_KEY], "family", "tiny-base", FAMILY).above
    world = [family_pipe.image_denoising_error(render_clip(spec)[0]) for spec in random_specs(8, 31337, frames=1)]
    assert max(world) < limit, world
    for name in ("coffee.jpg", "astronaut.jpg"):
        error = family_pipe.image_denoising_error(PHOTOS / name)
        assert error > limit, (name, error)
        assert family_pipe.image_denoising_error(PHOTOS / name) == error


def test_a_rule_reads_and_keeps_what_the_user_set():
    rule = unfamiliar_images_rule({"denoising_error_above": 0.07, "image_inversion": 0.5, "guidance": 2}, "here")
    assert rule == UnfamiliarImages(0.07, {"image_inversion": 0.5, "guidance": 2})
    assert rule.applies(0.0701) and not rule.applies(0.07)
    assert rule.without({"guidance", "prompt"}).settings == {"image_inversion": 0.5}
    assert rule.described() == "image inversion 0.5, guidance 2"
    assert unfamiliar_images_rule({"denoising_error_above": 0.07, "guidance": 2}, "here", "any-base").above == 0.07


def test_a_rule_may_give_each_base_its_own_limit():
    raw = {"denoising_error_above": {"tiny-base": 0.067, "tiny-personalized": 0.085}, "image_inversion": 0.5}
    assert rule_limits(raw, "here") == {"tiny-base": 0.067, "tiny-personalized": 0.085}
    assert unfamiliar_images_rule(raw, "here", "tiny-personalized").above == 0.085
    assert unfamiliar_images_rule(raw, "here", "other-base") is None  # a base the mapping does not name: no rule
    # The family's own declaration: each base calibrated on the world it draws.
    declared = read_declaration(FAMILY).settings[DECLARED_KEY]
    assert set(rule_limits(declared, "family")) == {"tiny-base", "tiny-personalized"}


@pytest.mark.parametrize("raw, needle", [
    (0.07, "must be an object"),
    ({"image_inversion": 0.5}, "needs denoising_error_above, a positive number"),
    ({"denoising_error_above": -1, "guidance": 2}, "needs denoising_error_above, a positive number"),
    ({"denoising_error_above": math.inf, "guidance": 2}, "needs denoising_error_above, a positive number"),
    ({"denoising_error_above": True, "guidance": 2}, "needs denoising_error_above, a positive number"),
    ({"denoising_error_above": {}, "guidance": 2}, "or an object of one per base name"),
    ({"denoising_error_above": {"tiny-base": 0}, "guidance": 2}, "or an object of one per base name"),
    ({"denoising_error_above": 0.07}, "names no setting to change"),
    ({"denoising_error_above": 0.07, "frames": 4}, "unknown setting 'frames'"),
    ({"denoising_error_above": 0.07, "guidance": "high"}, "guidance must be int or float"),
    ({"denoising_error_above": 0.07, "image_inversion": 1.5}, "image_inversion must lie in [0, 1]"),
    ({"denoising_error_above": 0.07, "strength": 0}, "strength must lie in (0, 1]"),
    ({"denoising_error_above": 0.07, "guidance": -1}, "guidance must be at least 0"),
    ({"denoising_error_above": 0.07, "image_guidance": "both"}, "image_guidance 'both' is not one of"),
])
def test_a_broken_rule_is_refused_in_one_line(raw, needle):
    with pytest.raises(MotionkitError) as caught:
        unfamiliar_images_rule(raw, "folder/motionkit-app.json")
    message = str(caught.value)
    assert needle in message and "folder/motionkit-app.json: unfamiliar_images" in message and "\n" not in message


@pytest.fixture(scope="module")
def models(tmp_path_factory, write_models_folder):
    """A models folder of tiny random models (its declaration written by each test) and a first frame."""
    return write_models_folder(tmp_path_factory.mktemp("models"))


def _declare(root: Path, limit: float) -> None:
    rule = {"denoising_error_above": limit, "image_inversion": 0.5, "guidance": 2.0}
    (root / DECLARATION).write_text(json.dumps({"frames": 2, "steps": 2, "guidance": 4.0, DECLARED_KEY: rule}))


def _animate(root: Path, out: Path, *extra: str) -> dict:
    code = main(["animate", "--base", str(root / "bases" / "base"), "--adapter", str(root / "adapters" / "adapter"),
                 "--prompt", "a ball", "--seed", "1", "--width", "64", "--height", "64", "--out", str(out), *extra])
    assert code == 0
    return json.loads(sidecar_path(out).read_text())


def test_animate_takes_the_declared_settings_for_an_unfamiliar_image_only(models, tmp_path, capsys):
    image = ["--image", str(models / "first.png")]
    _declare(models, 1e-9)  # every image is unfamiliar
    meta = _animate(models, tmp_path / "unfamiliar.gif", *image)
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("the image is unlike"))
    assert "image inversion 0.5, guidance 2, from unfamiliar_images in motionkit-app.json" in line
    assert "give --image-inversion or --guidance to choose yourself" in line
    assert (meta["settings"]["image_inversion"], meta["settings"]["guidance"]) == (0.5, 2.0)
    assert meta["image_familiarity"]["applied"] is True and meta["image_familiarity"]["limit"] == 1e-9
    assert meta["image_familiarity"]["denoising_error"] > 0

    # What the user sets stays the user's; the rest of the rule still applies.
    meta = _animate(models, tmp_path / "mine.gif", *image, "--guidance", "6")
    assert (meta["settings"]["image_inversion"], meta["settings"]["guidance"]) == (0.5, 6.0)
    assert "give --image-inversion to choose yourself" in capsys.readouterr().out

    # Under the limit: the declared defaults, and the line says so.
    _declare(models, 1e9)
    meta = _animate(models, tmp_path / "familiar.gif", *image)
    assert "the image is like the models' world" in capsys.readouterr().out
    assert (meta["settings"]["image_inversion"], meta["settings"]["guidance"]) == (0.0, 4.0)
    assert meta["image_familiarity"]["applied"] is False

    # A rule whose limits name other bases only is not this base's.
    rule = {"denoising_error_above": {"another-base": 1e-9}, "image_inversion": 0.5}
    (models / DECLARATION).write_text(json.dumps({"frames": 2, "steps": 2, DECLARED_KEY: rule}))
    meta = _animate(models, tmp_path / "other.gif", *image)
    assert meta["image_familiarity"] is None and meta["settings"]["image_inversion"] == 0.0
    (models / DECLARATION).write_text(json.dumps({"frames": 2, "steps": 2, DECLARED_KEY: {**rule, "denoising_error_above": {"base": 1e-9}}}))
    assert _animate(models, tmp_path / "named.gif", *image)["image_familiarity"]["applied"] is True
    capsys.readouterr()

    # Text-to-video has no image to measure; a rule whose every setting the user gave is not measured either.
    _declare(models, 1e-9)
    assert _animate(models, tmp_path / "t2v.gif")["image_familiarity"] is None
    meta = _animate(models, tmp_path / "given.gif", *image, "--guidance", "6", "--image-inversion", "0.2")
    assert meta["image_familiarity"] is None and "the image is" not in capsys.readouterr().out
    assert (meta["settings"]["image_inversion"], meta["settings"]["guidance"]) == (0.2, 6.0)


def test_a_few_step_preset_keeps_its_own_guidance(models, tmp_path):
    from motionkit.commands.animate import _plan

    _declare(models, 1e-9)
    given = {"base": str(models / "bases" / "base"), "adapter": str(models / "adapters" / "adapter"), "preset": "lightning-4",
             "out": str(tmp_path / "x.gif")}
    plan = _plan(given, [{"prompt": "a", "image": str(models / "first.png")}], tmp_path / "x.gif", batch=False)
    assert plan.jobs[0].unfamiliar.settings == {"image_inversion": 0.5}


def test_a_broken_rule_in_a_declaration_stops_animate_in_one_line(models, tmp_path, capsys):
    (models / DECLARATION).write_text(json.dumps({DECLARED_KEY: {"denoising_error_above": 0.07, "colour": 1}}))
    code = main(["animate", "--base", str(models / "bases" / "base"), "--adapter", str(models / "adapters" / "adapter"),
                 "--prompt", "a", "--out", str(tmp_path / "x.gif")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown setting 'colour'" in err and DECLARATION in err
    assert not list(tmp_path.iterdir())


def test_the_app_s_page_defaults_read_a_declaration_with_a_rule():
    from motionkit.app.defaults import page_defaults
    from motionkit.models_folder import ModelsFolder

    defaults = page_defaults(ModelsFolder(FAMILY))
    assert defaults.unfamiliar_rule["denoising_error_above"]["tiny-base"] > 0
    assert defaults.settings()["unfamiliar_images"] is True and "unfamiliar_rule" not in defaults.settings()


class _Pipe:
    """Stands in for a pipeline in the app service's check: a fixed denoising error, the calls it got, and the
    image processor the colour signal prepares the image with."""

    def __init__(self, error: float):
        from diffusers.image_processor import VaeImageProcessor

        self.error, self.calls, self.image_processor = error, [], VaeImageProcessor()

    def image_denoising_error(self, image, height, width, timestep, draws) -> float:
        self.calls.append((height, width, timestep, draws))
        return self.error


def test_the_app_service_takes_the_base_s_limit_and_keeps_a_preset_s_guidance(tmp_path):
    from dataclasses import replace

    from motionkit.app import Limits, ModelsFolder
    from motionkit.app.cache import ModelCache
    from motionkit.app.service import FORM, Service
    from motionkit.app.ui import _form_defaults
    from motionkit.app.defaults import page_defaults

    service = Service(ModelsFolder(FAMILY), Limits.for_device("cpu"), ModelCache(device="cpu"), out_dir=tmp_path)
    try:
        defaults = page_defaults(service.models)
        form = {**_form_defaults(defaults, "tiny-base", "tiny-motion"), "image": FAMILY / "examples" / "conditioning.png",
                "prompt": "a boat", "random_seed": False}
        job = service.check({name: form[name] for name in FORM})
        assert job.settings.unfamiliar_images is True
        # tiny-base's limit is 0.067: 0.07 is unfamiliar there, with the rule's settings over the sliders. The
        # world frame's colours are the world's: the colour signal alone would keep it.
        chosen = service._familiar(_Pipe(0.07), job)
        assert (chosen.settings.image_inversion, chosen.settings.guidance) == (0.6, 1.5)
        colour = chosen.familiarity.pop("colour_distance")
        assert 0 <= colour < 0.56
        assert chosen.familiarity == {"denoising_error": 0.07, "limit": 0.067, "colour_limit": 0.56, "applied": True,
                                      "findings": f"denoising error 0.070 > 0.067, colour distance {colour:.3f} <= 0.56",
                                      "settings": "image inversion 0.6, guidance 1.5"}
        # The cat photo: familiar by its denoising error, unfamiliar by its colours.
        cat = service._familiar(_Pipe(0.04), replace(job, image=PHOTOS / "cat.jpg"))
        assert cat.familiarity["applied"] and cat.familiarity["colour_distance"] > 0.56
        assert cat.settings.image_inversion == 0.6
        # tiny-personalized's is 0.085: the same error is familiar there.
        personal = replace(job, base=("tiny-personalized", FAMILY / "bases" / "tiny-personalized"),
                           image=FAMILY / "examples" / "conditioning-personalized.png")  # its own world's colours
        kept = service._familiar(_Pipe(0.07), personal)
        assert kept.settings == personal.settings and kept.familiarity["applied"] is False
        # A few-step preset keeps its guidance; the image inversion still comes from the rule.
        preset = service._familiar(_Pipe(1.0), replace(job, preset=object()))
        assert (preset.settings.image_inversion, preset.settings.guidance) == (0.6, job.settings.guidance)
    finally:
        service.close()


# ------------------------------------------------------------------------------------ the colour signal


def test_the_colour_distance_is_opencv_s_bhattacharyya_distance_to_the_nearest_palette_frame(tmp_path):
    import numpy as np

    from motionkit.colour_reference import colour_distance, palette_histograms, read_palette, write_palette
    from motionkit.metrics import histogram_distance

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    frames[0] = [30, 90, 200]  # a flat blue: only that frame shares the image's colours
    image = np.full((32, 32, 3), [30, 90, 200], np.uint8)
    write_palette(tmp_path / "palette.safetensors", {"world": palette_histograms(frames)})
    palette = read_palette(tmp_path / "palette.safetensors", "any-base")  # a base without its own reads "world"
    assert palette.shape == (5, 8 * 7 * 7)
    expected = min(histogram_distance(image, frame) for frame in frames)
    assert abs(colour_distance(image, palette) - expected) < 2e-3 and colour_distance(image, palette) < 0.01
    assert abs(colour_distance(frames[3], palette[1:]) - min(histogram_distance(frames[3], f) for f in frames[1:])) < 2e-3
    red = np.full((8, 8, 3), [220, 20, 20], np.uint8)
    assert colour_distance(red, palette[:1]) > 0.99  # no bin shared


def test_a_broken_palette_file_is_refused_in_one_line(tmp_path):
    import numpy as np
    from safetensors.torch import save_file

    from motionkit.colour_reference import read_palette, write_palette

    path = tmp_path / "palette.safetensors"
    for make, needle in [
        (lambda: None, "no palette file there"),
        (lambda: path.write_bytes(b"not a tensor file"), "not a readable safetensors file"),
        (lambda: save_file({"world": torch.zeros(2, 392)}, str(path), metadata={"lab_histogram_bins": "4,4,4"}),
         "a palette of 4,4,4 Lab histogram bins"),
        (lambda: save_file({"world": torch.zeros(2, 5)}, str(path), metadata={"lab_histogram_bins": "8,7,7"}),
         "world has shape [2, 5], a palette needs [frames, 392]"),
        (lambda: write_palette(path, {"tiny-base": np.zeros((2, 392))}), "no histograms for base 'other' nor 'world'"),
    ]:
        path.unlink(missing_ok=True)
        make()
        with pytest.raises(MotionkitError) as caught:
            read_palette(path, "other")
        assert needle in str(caught.value) and "\n" not in str(caught.value), caught.value
    with pytest.raises(MotionkitError, match="at least one set"):
        write_palette(path, {})


def test_the_family_s_palette_flags_the_smooth_cat_and_keeps_its_world():
    """The colour limit the tiny family declares: held-out world frames stay under it, and the cat photo, which
    the denoising error reads as a world frame, is over it; the rocket, which keeps its layout on the world's
    settings, is not."""
    from motionkit.colour_reference import colour_distance, read_palette
    from motionkit.data.world import random_specs
    from motionkit.data.world.scene import render_clip
    from motionkit.metrics import fit_image

    rule = unfamiliar_images_rule(read_declaration(FAMILY).settings[DECLARED_KEY], "family", "tiny-base", FAMILY)
    palette = read_palette(rule.palette, "tiny-base")
    world = [colour_distance(render_clip(spec)[0], palette) for spec in random_specs(8, 31337, frames=1)]
    assert max(world) < rule.colour_above, world
    distance = {name: colour_distance(fit_image(PHOTOS / f"{name}.jpg", 64, 64), palette) for name in ("cat", "rocket")}
    assert distance["cat"] > rule.colour_above > distance["rocket"], distance


def test_a_colour_rule_reads_its_palette_per_base(tmp_path):
    import numpy as np

    from motionkit.colour_reference import write_palette

    write_palette(tmp_path / "p.safetensors", {"tiny-base": np.full((1, 392), 1 / 392)})
    raw = {"colour_distance_above": {"tiny-base": 0.5}, "palette": "p.safetensors", "guidance": 2}
    rule = unfamiliar_images_rule(raw, "here", "tiny-base", tmp_path)
    assert (rule.above, rule.colour_above, rule.palette, rule.palette_base) == (None, 0.5, tmp_path / "p.safetensors", "tiny-base")
    assert rule.applies(None, 0.51) and not rule.applies(None, 0.5) and not rule.applies(10.0, None)
    assert unfamiliar_images_rule(raw, "here", "other-base", tmp_path) is None  # neither signal names it
    both = unfamiliar_images_rule({**raw, "denoising_error_above": 0.07}, "here", "tiny-base", tmp_path)
    assert both.applies(0.08, 0.1) and both.applies(0.01, 0.6) and not both.applies(0.01, 0.1)
    assert both.findings({"denoising_error": 0.01, "colour_distance": 0.6}) == "denoising error 0.010 <= 0.07, colour distance 0.600 > 0.5"
    assert rule_limits(raw, "here") == {} and rule_limits(raw, "here", "colour_distance_above") == {"tiny-base": 0.5}


@pytest.mark.parametrize("raw, needle", [
    ({"colour_distance_above": 0.5, "guidance": 2}, "colour_distance_above needs palette, the palette file's path"),
    ({"colour_distance_above": 0.5, "palette": "/abs.safetensors", "guidance": 2}, "needs palette, the palette file's path"),
    ({"colour_distance_above": 0.5, "palette": "../p.safetensors", "guidance": 2}, "needs palette, the palette file's path"),
    ({"colour_distance_above": 1.0, "palette": "p.safetensors", "guidance": 2}, "needs colour_distance_above, a number in (0, 1)"),
    ({"colour_distance_above": {"b": -1}, "palette": "p.safetensors", "guidance": 2}, "or an object of one per base name"),
    ({"denoising_error_above": 0.07, "palette": "p.safetensors", "guidance": 2}, "palette is read for colour_distance_above"),
    ({"colour_distance_above": 0.5, "palette": "missing.safetensors", "guidance": 2}, "no palette file there"),
])
def test_a_broken_colour_rule_is_refused_in_one_line(raw, needle, tmp_path):
    with pytest.raises(MotionkitError) as caught:
        unfamiliar_images_rule(raw, "folder/motionkit-app.json", folder=tmp_path)
    message = str(caught.value)
    assert needle in message and "\n" not in message, message


def test_animate_reads_the_colour_signal_and_says_which_signal_chose(models, tmp_path, capsys):
    import numpy as np

    from motionkit.colour_reference import palette_histograms, write_palette

    red = np.full((1, 64, 64, 3), [220, 20, 20], np.uint8)  # the grey first frame shares none of its colours
    write_palette(models / "world-palette.safetensors", {"world": palette_histograms(red)})
    rule = {"denoising_error_above": 1e9, "colour_distance_above": 0.5, "palette": "world-palette.safetensors",
            "image_inversion": 0.5, "guidance": 2.0}
    (models / DECLARATION).write_text(json.dumps({"frames": 2, "steps": 2, "guidance": 4.0, DECLARED_KEY: rule}))
    meta = _animate(models, tmp_path / "colour.gif", "--image", str(models / "first.png"))
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("the image is unlike"))
    assert "<= 1e+09, colour distance 1.000 > 0.5): image inversion 0.5, guidance 2" in line
    assert meta["image_familiarity"]["colour_distance"] == 1.0 and meta["image_familiarity"]["applied"] is True
    assert (meta["settings"]["image_inversion"], meta["settings"]["guidance"]) == (0.5, 2.0)
    # The palette of the grey frame itself: familiar by both signals.
    write_palette(models / "world-palette.safetensors", {"world": palette_histograms(np.full((1, 8, 8, 3), 200, np.uint8))})
    meta = _animate(models, tmp_path / "grey.gif", "--image", str(models / "first.png"))
    assert "colour distance 0.000 <= 0.5): their defaults" in capsys.readouterr().out
    assert meta["image_familiarity"]["applied"] is False and meta["settings"]["image_inversion"] == 0.0
    # A palette removed after the declaration was written: one line, nothing written.
    (models / "world-palette.safetensors").unlink()
    code = main(["animate", "--base", str(models / "bases" / "base"), "--adapter", str(models / "adapters" / "adapter"),
                 "--prompt", "a", "--image", str(models / "first.png"), "--out", str(tmp_path / "none.gif")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no palette file there" in err
    assert not (tmp_path / "none.gif").exists()


def test_the_shipped_palette_is_the_world_the_calibration_script_renders():
    """The family's palette is what ``calibrate_familiarity.py --write-palette`` writes (frame 0 of world clips
    of seed 0, per base in its style), and the family's build script writes it when it ships the family."""
    import importlib.util

    import numpy as np

    from motionkit.colour_reference import palette_histograms, read_palette

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("calibrate", root / "examples" / "tiny_family" / "calibrate_familiarity.py")
    calibrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibrate)
    for name, style in (("tiny-base", "natural"), ("tiny-personalized", "neon")):
        shipped = read_palette(FAMILY / calibrate.DEFAULT_PALETTE, name)
        assert shipped.shape == (calibrate.PALETTE_FRAMES, 392)
        rendered = palette_histograms(calibrate.world_frames(3, calibrate.PALETTE_SEED, style))
        np.testing.assert_allclose(shipped[:3], rendered, atol=1e-3)
    script = (root / "scripts" / "make_tiny_family.sh").read_text()
    assert script.index("wants ship") < script.index("--write-palette") < script.index("wants eval")


def test_the_calibration_script_writes_a_palette_and_measures_both_signals(tmp_path, capsys):
    import importlib.util
    import shutil

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("calibrate", root / "examples" / "tiny_family" / "calibrate_familiarity.py")
    calibrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibrate)
    family = tmp_path / "family"
    shutil.copytree(FAMILY, family, ignore=shutil.ignore_patterns("world-palette.safetensors"))
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(PHOTOS / "cat.jpg", photos / "cat.jpg")
    args = ["--family", str(family), "--bases", "tiny-base:natural", "--frames", "4", "--palette-frames", "3",
            "--photos", str(photos), "--out", str(tmp_path / "out")]
    # The declaration names a palette that is not there yet: without --write-palette, one line says how to make it.
    with pytest.raises(MotionkitError, match="no palette file there; write it with calibrate_familiarity.py --write-palette"):
        calibrate.main(args)
    # Rewriting one base's histograms keeps the other base's.
    shutil.copy(FAMILY / "world-palette.safetensors", family / "world-palette.safetensors")
    assert calibrate.main([*args, "--write-palette"]) == 0
    from motionkit.colour_reference import read_palettes

    written = read_palettes(family / "world-palette.safetensors")
    assert written["tiny-base"].shape == (3, 392) and written["tiny-personalized"].shape == (400, 392)
    report = json.loads((tmp_path / "out" / "report.json").read_text())["bases"]["tiny-base"]
    assert len(report["denoising_error"]["world"]) == len(report["colour_distance"]["world"]) == 4
    assert report["colour_distance"]["declared_limit"] == 0.56 and str(photos / "cat.jpg") in report["colour_distance"]["photos"]
    printed = capsys.readouterr().out
    assert "tiny-base, colour distance: suggested limit" in printed and "tiny-base, either declared limit:" in printed
    assert (tmp_path / "out" / "contact_sheet.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="the held-out frames would be the palette's own"):
        calibrate.main([*args, "--seed", "0", "--palette-seed", "0"])

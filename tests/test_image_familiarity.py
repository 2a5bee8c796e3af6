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

    limit = unfamiliar_images_rule(read_declaration(FAMILY).settings[DECLARED_KEY], "family", "tiny-base").above
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
    """Stands in for a pipeline in the app service's check: a fixed denoising error, the calls it got."""

    def __init__(self, error: float):
        self.error, self.calls = error, []

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
        # tiny-base's limit is 0.067: 0.07 is unfamiliar there, with the rule's settings over the sliders.
        chosen = service._familiar(_Pipe(0.07), job)
        assert (chosen.settings.image_inversion, chosen.settings.guidance) == (0.5, 2.0)
        assert chosen.familiarity == {"denoising_error": 0.07, "limit": 0.067, "applied": True,
                                      "settings": "image inversion 0.5, guidance 2"}
        # tiny-personalized's is 0.085: the same error is familiar there.
        personal = replace(job, base=("tiny-personalized", FAMILY / "bases" / "tiny-personalized"))
        kept = service._familiar(_Pipe(0.07), personal)
        assert kept.settings == personal.settings and kept.familiarity["applied"] is False
        # A few-step preset keeps its guidance; the image inversion still comes from the rule.
        preset = service._familiar(_Pipe(1.0), replace(job, preset=object()))
        assert (preset.settings.image_inversion, preset.settings.guidance) == (0.5, job.settings.guidance)
    finally:
        service.close()

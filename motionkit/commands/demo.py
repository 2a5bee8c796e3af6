"""``motionkit demo``: the main job, offline, on CPU, in well under two minutes.

Animates the tiny family's conditioning frame (and its caption) seven ways and measures each video:

(a) the image model alone, frame by frame: the same pipeline with a fresh (zero-initialised) copy of
    the adapter, which is the identity, so every frame is denoised by the frozen image UNet on its own;
(a-t) the image model alone on the prompt, no image: the baseline of text-to-video;
(t) text-to-video: the base model with the shipped motion adapter, the prompt alone, no image;
(b) image-to-video through the adapter's image-conditioning branch;
(e) image-to-video through the branch and the family's SparseCtrl RGB encoder, keyframe 0 = the image
    (the ``--sparsectrl`` / ``--keyframe`` path of ``motionkit animate``); skipped when the family has none;
(a-c) the personalized variant alone, frame by frame, on its own frame: the family's example as the personalized
    variant draws it (``examples/conditioning-personalized.png``; the example itself when the family ships none);
(c) the personalized variant with the same adapter, unchanged, image-to-video through the branch from that frame
    (a personalized checkpoint animates stills it made; it repaints a frame of another style into its own).

The sampling settings (frames, steps, guidance, scheduler, image-to-video strength, frame-0 anchoring) are
the family's declaration (``motionkit-app.json``, read as the app reads it); ``--steps``, ``--frames`` and
``--guidance`` override theirs. Beside the videos, two references measured in the same run: the VAE's own
reconstruction of the image (the ceiling of any frame's fidelity) and real world clips passed through the
same VAE (the example's source clip when the example is one, else clips of unseen seeds;
``motionkit.family.world_reference_clips``), and the same two for (c)'s own frame.

The verdict (``verdict``, a pure function of the metrics) passes (t) when it is steadier than (a-t) (warping
error and flicker) and still moves, and passes (b), (e) and (c) when each is steadier than the image model on
its image ((a); for (c), (a-c)), still moves, keeps frame 0, and holds the image over frames 1..N-1 about as
well as the real clips do: PSNR against the image and against frame 0, the jump from frame 0 to 1, and
colour drift, each against a threshold derived from the references. A failed verdict prints FAIL lines with
the reasons; the process still exits 0 so the demo stays a showcase, and ``--strict`` makes it exit 1.

The models come from the tiny family (``motionkit/assets/tiny-family``), or from ``--models-dir DIR``
with the same layout (see ``motionkit.family``).

Writes ``<name>.mp4`` and ``<name>.gif`` per video, ``contact-sheet.png`` (every frame of every run, each row
marked PASS or FAIL with its first failed check, the overall verdict at the bottom) and ``metrics.json``
into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from motionkit.errors import MotionkitError
from motionkit.family import ADAPTER, BASE, ENCODER, PERSONALIZED, TinyFamily

# What the summary calls "still moving" (mean flow, px per frame pair) and "a faithful first frame".
MIN_MOTION = 0.1
# Faithful: frame 0 matches the VAE's reconstruction of the image.
FAITHFUL_PSNR, FAITHFUL_SSIM = 30.0, 0.9
# Adherence thresholds are relative to the real clips measured in the same run. They are the shipped family's
# image-to-video targets: looser ones (3 dB, half-way to 1 in histogram distance) passed videos whose frames
# 1..N-1 were plainly another picture, the image model's own scene.
# PSNR vs the image may fall this many dB below the clips' (frame 0 may drift more: the clips move too);
PSNR_MARGIN_DB = 0.5
FRAME0_MARGIN_DB = 3.0
# text-to-video's warping error may be this many times the real clips' (the family's steadiness target);
WARP_FACTOR = 2.0
# the 0 -> 1 jump ratio may be this many times the clips' (at least 1: steady motion);
JUMP_FACTOR = 1.5
# the mean-colour delta E may be this many times the larger of the clips' and the VAE's;
COLOUR_FACTOR = 1.5
# the histogram distance (0..1) may close this share of the gap from the larger reference to 1 (no colour shared).
HISTOGRAM_SHARE = 0.25
# The columns beside the videos: the VAE's reconstruction of the image, and the real clips through the VAE;
# the same for (c)'s own frame when the family ships one (its personalized style).
PERSONAL_VAE, PERSONAL_WORLD = "vae_personalized", "world_personalized"
PERSONAL_IMAGE = "image_personalized"  # (c)'s frame as the pipeline sees it, on the contact sheet
REFERENCES: tuple[tuple[str, str], ...] = (
    ("vae", "VAE ceiling"), ("world", "real clip"), (PERSONAL_VAE, "VAE ceiling (c)"), (PERSONAL_WORLD, "real clip (c)"),
)


# --------------------------------------------------------------------------------------------- command


@dataclass(frozen=True)
class Variant:
    """One video of the demo: which base, whether the adapter is the fresh identity, what conditions it."""

    key: str
    stem: str  # file stem of its videos
    heading: str  # its column in the table, its row on the contact sheet
    base: str = BASE
    identity: bool = False  # a fresh zero-initialised adapter: the image model alone
    image: bool = True  # image-to-video (else text-to-video from the prompt alone)
    encoder: bool = False  # the family's SparseCtrl encoder on keyframe 0 = the image
    baseline: str = "a"  # the image-model video it must be steadier than: the same task without motion modules
    # The family's example frame in the personalized style (when it ships one) instead of the example itself:
    # a personalized checkpoint animates stills it made, and repaints a frame of another style in its own.
    own_style: bool = False


VARIANTS: tuple[Variant, ...] = (
    Variant("a", "a-image-model", "(a) image model", identity=True),
    # Text-to-video starts from pure noise, image-to-video from the noised image: each is judged against the
    # image model doing the same task.
    Variant("at", "at-image-model-text", "(a-t) image model, text", identity=True, image=False),
    Variant("t", "t-text-to-video", "(t) text-to-video", image=False, baseline="at"),
    Variant("b", "b-image-branch", "(b) image, branch"),
    Variant("e", "e-image-encoder", "(e) image, encoder", encoder=True),
    Variant("ac", "ac-personalized-image-model", "(a-c) personalized image model", base=PERSONALIZED, identity=True,
            own_style=True),
    Variant("c", "c-personalized", "(c) personalized", base=PERSONALIZED, own_style=True, baseline="ac"),
)
# The SparseCtrl encoder's scale in (e): as trained.
ENCODER_SCALE = 1.0


def conditioning_of(variant: Variant, family: TinyFamily) -> Path:
    """The frame ``variant`` animates: the family's frame in the personalized style for an ``own_style``
    variant when the family ships one, else the family's example."""
    if variant.own_style and family.personalized_conditioning is not None:
        return family.personalized_conditioning
    return family.conditioning


def reference_keys(variant: Variant, references: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The references (VAE, real clip) ``variant`` is held to: its own frame's when they were measured."""
    if variant.own_style and PERSONAL_WORLD in references:
        return PERSONAL_VAE, PERSONAL_WORLD
    return "vae", "world"


# metric key, row label, which way is better
ROWS: tuple[tuple[str, str, str], ...] = (
    ("strength", "strength (share of the schedule run)", "setting"),
    ("warping_error", "warping error", "lower"),
    ("mean_abs_frame_diff", "flicker, mean |frame diff| 0-255", "lower"),
    ("temporal_flicker", "flicker score (VBench, 1 = steady)", "higher"),
    ("motion_score", "motion score, px per frame", "moving"),
    ("dynamic_degree", "dynamic degree (VBench rule)", "moving"),
    ("psnr_image", "frames 1..N-1: PSNR vs the image, dB", "higher"),
    ("ssim_image", "frames 1..N-1: SSIM vs the image", "higher"),
    ("psnr_frame0", "frames 1..N-1: PSNR vs frame 0, dB", "higher"),
    ("delta_e_image", "frames 1..N-1: colour delta E vs the image", "lower"),
    ("hist_image", "frames 1..N-1: Lab histogram distance, 0-1", "lower"),
    ("jump_ratio", "jump |f1 - f0| / median later step", "~1"),
    ("first_frame_psnr", "first frame PSNR vs VAE reconstruction, dB", "higher"),
    ("first_frame_ssim", "first frame SSIM vs VAE reconstruction", "higher"),
    ("first_frame_psnr_image", "first frame PSNR vs the image, dB", "higher"),
)
# The adherence keys of ``motionkit.metrics.adherence_report`` the demo keeps (means over frames 1..N-1).
ADHERENCE = ("psnr_image", "ssim_image", "psnr_frame0", "ssim_frame0", "delta_e_image", "hist_image", "jump_ratio")


@dataclass(frozen=True)
class Settings:
    """How every video is sampled: the family's declaration, with the flags given on top."""

    frames: int
    steps: int
    guidance: float
    strength: float  # image-to-video only: text-to-video runs the whole schedule
    scheduler: str
    anchor_first_frame: bool
    image_guidance: str = "pia"  # image-to-video only, as strength
    image_inversion: float = 0.0  # image-to-video only: the share of starting noise from the image's inversion
    # Text-to-video's, (t) and its baseline (a-t) alike; image-to-video starts from the image with independent noise.
    noise_correlation: float = 0.0
    # Text-to-video's frame noise means likewise (motionkit.noise_prior); from an image the pipeline takes them out.
    frame_noise_means: str = "drawn"
    # Text-to-video's FreeInit passes likewise (motionkit.pipeline.free_init); 0 or 1: one pass.
    free_init: int = 0


def family_settings(
    family: TinyFamily, *, base: Path | None = None, steps: int | None = None, frames: int | None = None,
    guidance: float | None = None,
) -> Settings:
    """The family's declared sampling settings (``motionkit-app.json``, as the app reads it) for ``base`` (None:
    its image model; a base with settings of its own there gets those), overridden by the values given; refuses, in
    one line, settings that cannot make a moving video."""
    from motionkit.app.defaults import page_defaults
    from motionkit.models_folder import ModelsFolder, entry_name

    declared = page_defaults(ModelsFolder(family.root), entry_name(family.base if base is None else base))
    settings = Settings(
        frames=declared.frames if frames is None else frames,
        steps=declared.steps if steps is None else steps,
        guidance=float(declared.guidance if guidance is None else guidance),
        strength=float(declared.strength),
        scheduler=declared.scheduler,
        anchor_first_frame=declared.anchor_first_frame,
        image_guidance=declared.image_guidance,
        image_inversion=float(declared.image_inversion),
        noise_correlation=float(declared.noise_correlation),
        frame_noise_means=declared.frame_noise_means,
        free_init=declared.free_init,
    )
    check_sampling(settings.frames, settings.steps, settings.guidance, settings.strength)
    return settings


def check_sampling(frames: int | None, steps: int | None, guidance: float | None, strength: float | None = None) -> None:
    """Refuse, in one line, sampling values that cannot make a moving video (``None``: not checked)."""
    if frames is not None and frames < 2:
        raise MotionkitError(f"--frames must be at least 2 to show motion, got {frames}")
    if steps is not None and steps < 1:
        raise MotionkitError(f"--steps must be at least 1, got {steps}")
    if guidance is not None and guidance < 0:
        raise MotionkitError(f"--guidance must be >= 0, got {guidance}")
    if strength is not None and not 0.0 < strength <= 1.0:
        raise MotionkitError(f"the family's image-to-video strength must lie in (0, 1], got {strength:g}: fix its motionkit-app.json")
    # The pipeline runs the last int(steps * strength) steps from the image: none is no video at all.
    if steps is not None and strength is not None and int(steps * strength) < 1:
        needed = math.ceil(1.0 / strength)
        needed += int(needed * strength) < 1  # float rounding can leave ceil one short
        raise MotionkitError(
            f"--steps {steps} keeps no denoising step at the family's image-to-video strength {strength:g}: "
            f"pass --steps {needed} or more"
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="text-to-video and image-to-video (branch, SparseCtrl encoder) with the tiny family against the image "
        "model alone, with a verdict (offline)",
        description="The shipped tiny family, five ways, each beside the image model alone: text-to-video with the "
        "motion adapter, image-to-video through the adapter's image branch, the same with the SparseCtrl encoder "
        "on keyframe 0, and the personalized model with the same adapter on the example in its own style. Writes "
        "the videos, a contact sheet marked with the verdict and metrics.json; prints the metrics beside the VAE's ceiling and real clips, and a "
        "verdict. Sampling settings are the family's (motionkit-app.json) unless given. Offline, well under two "
        "minutes on a laptop CPU.",
    )
    add = parser.add_argument
    add("--out", type=Path, default=Path("motionkit-out/demo"), help="output folder (default motionkit-out/demo)")
    add("--steps", type=int, help="denoising steps (default: the family's, 25 for the tiny family)")
    add("--frames", type=int, help="frames per video (default: the family's, 8 for the tiny family, its training length)")
    add("--guidance", type=float, help="classifier-free guidance scale (default: the family's, 4 for the tiny family)")
    add("--seed", type=int, default=0, help="random seed, the same for every video (default 0)")
    add("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    add("--attention-backend", default="auto", choices=("auto", "sdpa", "math", "xformers", "triton"),
        help="temporal attention kernel (default auto)")
    add("--models-dir", type=Path, help="a folder laid out as the tiny family (default: the one shipped with motionkit)")
    add("--strict", action="store_true",
        help="exit with status 1 when the verdict fails (default: print FAIL lines and exit 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    given = {"frames": args.frames, "steps": args.steps, "guidance": args.guidance}
    check_sampling(**given)  # before any model is looked for; the family's own values once it is found
    from motionkit.commands.eval import json_safe
    from motionkit.utils.atomic import atomic_write

    family = TinyFamily.find(args.models_dir)
    settings = family_settings(family, **given)
    personal = family_settings(family, base=family.personalized, **given)
    start = time.perf_counter()
    made = animate_family(
        family, args.out, settings, seed=args.seed, device=args.device, attention_backend=args.attention_backend,
        personalized_settings=personal,
    )
    judged = verdict(made.results, made.references)
    sheet = write_verdict_sheet(args.out / "contact-sheet.png", made, judged)
    print()
    print(format_table(made.results, made.references))
    print()
    for line in verdict_lines(judged):
        print(line)
    report = {
        "models": str(family.root),
        "prompt": family.prompt,
        "settings": {**asdict(settings), "seed": args.seed, "given": {k: v for k, v in given.items() if v is not None}},
        "personalized_settings": asdict(personal),
        "baseline": "(a) runs a fresh zero-initialised copy of the adapter: the identity, so each frame is the image model alone",
        "videos": {key: json_safe(result) for key, result in made.results.items()},
        "skipped": made.skipped,
        "references": {key: json_safe(value) for key, value in made.references.items()},
        "verdict": json_safe(judged.to_dict()),
        "contact_sheet": str(sheet),
        "seconds": round(time.perf_counter() - start, 1),
    }
    metrics = args.out / "metrics.json"
    with atomic_write(metrics) as handle:
        handle.write(json.dumps(report, indent=2) + "\n")
    print(f"\nvideos, {sheet.name} and {metrics.name} in {args.out} ({report['seconds']:.0f} s)")
    return 1 if args.strict and not judged.passed else 0


@dataclass
class DemoRun:
    """What ``animate_family`` made: metrics per video (``VARIANTS`` order), the references, the frames to show
    and the variants left out with why."""

    results: dict[str, dict[str, Any]]
    references: dict[str, dict[str, Any]]
    videos: dict[str, Any]  # key -> uint8 [F, H, W, 3]
    shown: dict[str, Any]  # "image" and "world" (and PERSONAL_IMAGE, PERSONAL_WORLD): reference frames for the sheet
    skipped: dict[str, str]


def animate_family(
    family: TinyFamily,
    out: Path,
    settings: Settings,
    *,
    seed: int,
    device: str | None = None,
    attention_backend: str = "auto",
    personalized_settings: Settings | None = None,
) -> DemoRun:
    """Make and measure every variant the family allows, and the references; writes the videos. The personalized
    model's variants sample with ``personalized_settings`` (its own declared ones) when given, else ``settings``."""
    from motionkit.adapter import MotionAdapter
    from motionkit.commands.animate import assemble_pipeline, device_and_dtype, quiet_loading
    from motionkit.pipeline.control_plan import control_plan
    from motionkit.pipeline.loading import load_adapter_for, load_base

    # The encoder goes in as `motionkit animate --sparsectrl ENCODER --keyframe 0:IMAGE` would give it.
    control = None if family.encoder is None else control_plan(
        sparsectrl={"path": str(family.encoder), "scale": ENCODER_SCALE},
        keyframe=[{"index": 0, "image": str(family.conditioning)}],
    )
    if control is not None:
        control.check_frames(settings.frames)
    device, dtype = device_and_dtype(device)
    out.mkdir(parents=True, exist_ok=True)
    paths = {BASE: family.base, PERSONALIZED: family.personalized}
    with quiet_loading():
        bases = {BASE: load_base(family.base, dtype=dtype, device=device)}
        adapter = load_adapter_for(bases[BASE], family.adapter)
    # A fresh adapter of the same shape starts as the identity (zero-initialised outputs and image branch).
    identity = MotionAdapter.from_config(adapter.config)
    print(f"animating {family.conditioning.name} from {family.root}: {settings.frames} frames, {settings.steps} "
          f"steps, guidance {settings.guidance:g}, image-to-video strength {settings.strength:g}, "
          f"text-to-video noise correlation {settings.noise_correlation:g}"
          + (f" and {settings.free_init} FreeInit passes" if settings.free_init > 1 else "") + f", seed {seed}")
    print(f"prompt: {family.prompt or '(none: the image alone conditions the video)'}")
    run = DemoRun({}, {}, {}, {}, {})
    for variant in VARIANTS:
        if variant.encoder and control is None:
            run.skipped[variant.key] = f"the family has no encoders/{ENCODER}"
            print(f"{variant.heading}: skipped, {run.skipped[variant.key]}")
            continue
        if variant.base not in bases:
            with quiet_loading():
                bases[variant.base] = load_base(paths[variant.base], dtype=dtype, device=device)
        encoder = None
        if variant.encoder:
            with quiet_loading():
                encoder = control.load_model(device, dtype)
        motion = identity if variant.identity else adapter
        chosen = personalized_settings if variant.base == PERSONALIZED and personalized_settings is not None else settings
        pipe = assemble_pipeline(bases[variant.base], motion, chosen.scheduler, attention_backend, encoder)
        conditioning = conditioning_of(variant, family)
        inversion = f", image inversion {chosen.image_inversion:g}" if chosen.image_inversion else ""
        how = (f"image-to-video from {conditioning.name} at strength {chosen.strength:g}, {chosen.image_guidance} "
               f"image guidance{inversion}" if variant.image else "text-to-video, no image")
        extra = f" + {ENCODER} on keyframe 0 (scale {ENCODER_SCALE:g})" if encoder is not None else ""
        print(f"{variant.heading}: {variant.base}, {'fresh identity adapter' if variant.identity else ADAPTER}{extra}; {how}")
        try:
            if not run.references:  # the base model's VAE, which the personalized variant shares
                run.references, run.shown = measure_references(pipe, family, frames=settings.frames)
            if conditioning != family.conditioning and PERSONAL_WORLD not in run.references:
                measured, shown = measure_references(pipe, family, frames=chosen.frames, conditioning=conditioning)
                run.references.update({PERSONAL_VAE: measured["vae"], PERSONAL_WORLD: measured["world"]})
                run.shown.update({PERSONAL_IMAGE: shown["image"], PERSONAL_WORLD: shown["world"]})
            run.videos[variant.key], run.results[variant.key] = _make_video(
                pipe, family, variant, out / variant.stem, chosen, seed=seed,
                control=control.call_kwargs() if encoder is not None else {},
            )
        finally:
            pipe.eject()  # hand the UNet back untouched for the next variant
    return run


def _pipeline_size(pipe: Any) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def measure_references(
    pipe: Any, family: TinyFamily, *, frames: int, conditioning: Path | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The VAE's reconstruction of the image (``conditioning``, default the family's example) and real world
    clips through the VAE, measured as the videos are.

    Returns the metrics ``{"vae": ..., "world": ...}`` and the frames to show (the image as the pipeline sees
    it, the first real clip after the VAE)."""
    import numpy as np

    from motionkit.family import world_reference_clips
    from motionkit.pipeline.image_input import vae_round_trip
    from motionkit.metrics import adherence_report, colour_delta_e, colour_histogram_distance, evaluate_video, fit_video, psnr, ssim

    conditioning = family.conditioning if conditioning is None else conditioning
    size = _pipeline_size(pipe)
    image = _seen_image(conditioning, size)
    reconstruction = vae_round_trip(pipe.vae, image[None])[0]
    vae = {
        "psnr_image": psnr(reconstruction, image),
        "ssim_image": ssim(reconstruction, image),
        "delta_e_image": colour_delta_e(reconstruction[None], image)[0],
        "hist_image": colour_histogram_distance(reconstruction[None], image)[0],
    }
    clips, source = world_reference_clips(conditioning, frames, size=size)
    measured, shown = [], None
    for clip in clips:
        real = fit_video(clip, size, size)
        through = vae_round_trip(pipe.vae, real)
        shown = through if shown is None else shown
        # Each clip is judged against its own first frame: the image it would have been conditioned on.
        adherence = adherence_report(through, real[0])
        measured.append({**evaluate_video(through), **{k: adherence[k] for k in ADHERENCE}})
    # Several clips (unseen seeds) are averaged; counts and yes/no values come from the first.
    world: dict[str, Any] = {
        key: float(np.mean([m[key] for m in measured])) if isinstance(value, float) else value
        for key, value in measured[0].items()
    }
    world.update(source=source, clips=len(clips))
    return {"vae": vae, "world": world}, {"image": image, "world": shown}


def _seen_image(conditioning: Path, size: int) -> Any:
    """The conditioning image exactly as the pipeline sees it (resized to cover, centre-cropped), uint8."""
    from motionkit.metrics import fit_image
    from motionkit.pipeline.image_input import load_image

    return fit_image(load_image(conditioning), size, size)


def _make_video(
    pipe: Any, family: TinyFamily, variant: Variant, stem: Path, settings: Settings, *, seed: int, control: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    import numpy as np
    import torch

    from motionkit.metrics import adherence_report, evaluate_video, psnr
    from motionkit.noise_prior import text_to_video_noise
    from motionkit.pipeline.free_init import set_free_init_passes
    from motionkit.pipeline.image_input import vae_round_trip
    from motionkit.video_io import write_video

    size = _pipeline_size(pipe)
    conditioning = conditioning_of(variant, family)
    # Text-to-video has no image to start from or anchor to: the whole schedule from noise.
    given = {"image": conditioning, "strength": settings.strength,
             "anchor_first_frame": settings.anchor_first_frame, "image_guidance": settings.image_guidance,
             "image_inversion": settings.image_inversion} if variant.image else {}
    set_free_init_passes(pipe, 0 if variant.image else settings.free_init)
    output = pipe(
        prompt=family.prompt,
        num_frames=settings.frames,
        height=size,
        width=size,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        **text_to_video_noise(settings.noise_correlation, settings.frame_noise_means, conditioned=variant.image),
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
        **given,
        **control,
    )
    video = (np.nan_to_num(np.clip(output.frames[0], 0.0, 1.0)) * 255).round().astype(np.uint8)
    written = [str(write_video(video, stem.with_suffix(suffix), fps=8)) for suffix in (".mp4", ".gif")]
    if not variant.image:
        return video, {**evaluate_video(video), "strength": 1.0, "files": written}
    # A first frame can be no closer to the image than the VAE's own round trip of it.
    image = _seen_image(conditioning, size)
    reconstruction = vae_round_trip(pipe.vae, image[None])[0]
    adherence = adherence_report(video, image)
    return video, {
        **evaluate_video(video, reconstruction),
        "strength": settings.strength,
        "first_frame_psnr_image": psnr(video[0], image),
        "vae_psnr": psnr(reconstruction, image),
        **{key: adherence[key] for key in ADHERENCE},
        "per_frame": adherence["per_frame"],
        "image": str(conditioning),
        "files": written,
    }


# --------------------------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Check:
    """One test of one video: ``value`` against ``limit`` (``at_least`` says which way passes)."""

    video: str
    name: str
    value: float
    limit: float
    at_least: bool
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    thresholds: dict[str, float]
    checks: tuple[Check, ...]
    # The limits of (c) from its own frame's references, when it had its own frame (else empty).
    personalized_thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "thresholds": self.thresholds,
                "personalized_thresholds": self.personalized_thresholds, "checks": [asdict(c) for c in self.checks]}


def adherence_thresholds(
    references: dict[str, dict[str, Any]], keys: tuple[str, str] = ("vae", "world")
) -> dict[str, float]:
    """The limits frames 1..N-1 of an adapted video are held to, from the references of the same run (``keys``:
    which VAE and real-clip references; ``reference_keys`` gives a variant's)."""
    vae, world = (references[key] for key in keys)
    return {
        "psnr_image": world["psnr_image"] - PSNR_MARGIN_DB,
        "psnr_frame0": world["psnr_frame0"] - FRAME0_MARGIN_DB,
        "jump_ratio": JUMP_FACTOR * max(1.0, world["jump_ratio"]),
        "delta_e_image": COLOUR_FACTOR * max(world["delta_e_image"], vae["delta_e_image"]),
        "hist_image": _toward_one(max(world["hist_image"], vae["hist_image"]), HISTOGRAM_SHARE),
    }


def _toward_one(reference: float, share: float) -> float:
    return reference + share * (1.0 - reference)


def _check(video: str, name: str, value: float, limit: float, *, at_least: bool, note: str = "") -> Check:
    # NaN (a broken model) fails every comparison, so it fails the check.
    passed = bool(value >= limit) if at_least else bool(value <= limit)
    return Check(video, name, float(value), float(limit), at_least, passed, note)


def verdict(results: dict[str, dict[str, Any]], references: dict[str, dict[str, Any]]) -> Verdict:
    """Judge every video beside (a): text-to-video (t) steadier than (a) and still moving; image-to-video
    (b, e, c) that too, frame 0 kept, and the image held over frames 1..N-1 within ``adherence_thresholds``.
    Videos absent from ``results`` (a skipped variant) are not judged; (c) is held to its own frame's
    references when they were measured. A pure function of the metrics."""
    checks = []
    for variant in VARIANTS:
        key, r = variant.key, results.get(variant.key)
        if r is None or variant.identity:
            continue
        limits = adherence_thresholds(references, reference_keys(variant, references))
        a, name = results[variant.baseline], f"({'-'.join(variant.baseline)})"  # "at" -> "(a-t)"
        checks += [
            _check(key, f"warping error vs {name}", r["warping_error"], a["warping_error"], at_least=False),
            _check(key, f"flicker vs {name}", r["mean_abs_frame_diff"], a["mean_abs_frame_diff"], at_least=False),
            _check(key, "motion score", r["motion_score"], MIN_MOTION, at_least=True),
        ]
        if not variant.image:
            # Steadier than the image model alone is not enough: frames that are each another scene pass that.
            # Text-to-video is held to the real clip's steadiness too, within WARP_FACTOR.
            if "warping_error" in references.get("world", {}):
                limit = WARP_FACTOR * references["world"]["warping_error"]
                checks.append(_check(key, "warping error vs real clip", r["warping_error"], limit, at_least=False))
            continue
        checks += [
            _check(key, "first frame PSNR vs VAE reconstruction", r["first_frame_psnr"], FAITHFUL_PSNR, at_least=True),
            _check(key, "first frame SSIM vs VAE reconstruction", r["first_frame_ssim"], FAITHFUL_SSIM, at_least=True),
            _check(key, "PSNR vs the image", r["psnr_image"], limits["psnr_image"], at_least=True),
            _check(key, "PSNR vs frame 0", r["psnr_frame0"], limits["psnr_frame0"], at_least=True),
            _check(key, "colour delta E", r["delta_e_image"], limits["delta_e_image"], at_least=False),
            _check(key, "histogram distance", r["hist_image"], limits["hist_image"], at_least=False),
        ]
        if r.get("frames", 3) >= 3:  # the jump ratio needs two later steps to compare with
            checks.append(_check(key, "jump ratio", r["jump_ratio"], limits["jump_ratio"], at_least=False))
    own = adherence_thresholds(references, (PERSONAL_VAE, PERSONAL_WORLD)) if PERSONAL_WORLD in references else {}
    return Verdict(adherence_thresholds(references), tuple(checks), own)


def failed_reason(check: Check) -> str:
    """One failed check in a few words: ``PSNR vs the image 9 < 15.2``."""
    return f"{check.name} {check.value:.3g} {'<' if check.at_least else '>'} {check.limit:.3g}"


def video_verdicts(judged: Verdict) -> dict[str, tuple[bool, list[Check]]]:
    """Per judged video (``VARIANTS`` order): whether it passed, and its failed checks."""
    judged_keys = {c.video for c in judged.checks}
    verdicts = {}
    for variant in VARIANTS:
        if variant.key in judged_keys:
            failed = [c for c in judged.checks if c.video == variant.key and not c.passed]
            verdicts[variant.key] = (not failed, failed)
    return verdicts


def verdict_lines(judged: Verdict) -> list[str]:
    """The thresholds, one PASS/FAIL line per judged video with its failed checks, and the overall result."""
    t = judged.thresholds
    lines = [
        f"thresholds from the real clip and the VAE in this run: PSNR vs the image >= {t['psnr_image']:.2f} dB "
        f"(real clip - {PSNR_MARGIN_DB:g}) and vs frame 0 >= {t['psnr_frame0']:.2f} dB (real clip - {FRAME0_MARGIN_DB:g}); jump ratio <= "
        f"{t['jump_ratio']:.2f} ({JUMP_FACTOR:g}x the real clip's, at least {JUMP_FACTOR:g}); delta E <= "
        f"{t['delta_e_image']:.2f} ({COLOUR_FACTOR:g}x the larger of real clip and VAE); histogram distance <= "
        f"{t['hist_image']:.3f} (the larger reference, {HISTOGRAM_SHARE:g} of the way to 1); steadier than (a), (t) than (a-t) "
        f"and within {WARP_FACTOR:g}x the real clip's warping error, (c) than (a-c); "
        f"motion >= {MIN_MOTION}; "
        f"frame 0 >= {FAITHFUL_PSNR:g} dB / SSIM {FAITHFUL_SSIM} vs the VAE reconstruction; "
        "(t) is judged on steadiness and motion alone"
    ]
    if own := judged.personalized_thresholds:
        lines.append(
            f"(c) animates its own frame, held to that frame's real clip and VAE: PSNR vs the image >= "
            f"{own['psnr_image']:.2f} dB, vs frame 0 >= {own['psnr_frame0']:.2f} dB; jump ratio <= {own['jump_ratio']:.2f}; "
            f"delta E <= {own['delta_e_image']:.2f}; histogram distance <= {own['hist_image']:.3f}"
        )
    headings = {v.key: v.heading for v in VARIANTS}
    for key, (passed, failed) in video_verdicts(judged).items():
        if passed:
            count = sum(c.video == key for c in judged.checks)
            lines.append(f"PASS {headings[key]}: all {count} checks")
        else:
            lines.append(f"FAIL {headings[key]}: {'; '.join(map(failed_reason, failed))}")
    lines.append(f"verdict: {'PASS' if judged.passed else 'FAIL'} (--strict exits 1 on FAIL)")
    return lines


# --------------------------------------------------------------------------------------------- report


def format_table(results: dict[str, dict[str, Any]], references: dict[str, dict[str, Any]] | None = None) -> str:
    """The metrics of every video, and of the references, side by side: one row per metric."""
    from motionkit.commands.eval import format_value

    columns = [(v.heading, results[v.key]) for v in VARIANTS if v.key in results]
    columns += [(heading, references[key]) for key, heading in REFERENCES if references and key in references]
    rows = [
        [label, better] + [format_value(values[metric]) if metric in values else "-" for _, values in columns]
        for metric, label, better in ROWS
    ]
    header = ["metric", "better"] + [heading for heading, _ in columns]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    notes = ["(a) = the same pipeline with a fresh zero-initialised adapter (the identity): the image model, frame by frame",
             "(t) = text-to-video, no image: its frames are not measured against the image"]
    if references:
        notes.append("VAE ceiling = the VAE's reconstruction of the image (one frame); real clip = "
                     f"{references['world'].get('source', 'real clips')} through the same VAE")
    if references and PERSONAL_WORLD in references:
        notes.append("(a-c) and (c) animate the example in the personalized style; VAE ceiling (c) and real clip (c) = "
                     f"the same for that frame ({references[PERSONAL_WORLD].get('source', 'real clips')})")
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows), *notes])


def write_verdict_sheet(path: Path, run: DemoRun, judged: Verdict) -> Path:
    """The contact sheet of the run: the image, every video marked PASS or FAIL (with its first failed check)
    and the real clip; the overall verdict at the bottom."""
    from motionkit.contact_sheet import write_contact_sheet

    verdicts = video_verdicts(judged)
    rows: list[tuple[str, Any, str]] = [("image", run.shown["image"], "the input")]
    for variant in VARIANTS:
        if variant.key not in run.videos:
            continue
        if variant.own_style and PERSONAL_IMAGE in run.shown and not any(row[0] == "image (c)" for row in rows):
            rows.append(("image (c)", run.shown[PERSONAL_IMAGE], "personalized style"))
        if variant.key not in verdicts:
            note = "baseline"
        else:
            passed, failed = verdicts[variant.key]
            note = "PASS" if passed else f"FAIL: {failed_reason(failed[0])}"
            if len(failed) > 1:
                note += f"\n(+{len(failed) - 1} more)"
        rows.append((variant.heading, run.videos[variant.key], note))
    rows.append(("real clip", run.shown["world"], "reference"))
    if PERSONAL_WORLD in run.shown:
        rows.append(("real clip (c)", run.shown[PERSONAL_WORLD], "reference"))
    failing = [key for key, (passed, _) in verdicts.items() if not passed]
    if failing:
        footer = f"verdict: FAIL: {', '.join(f'({key})' for key in failing)} failed"
    else:
        footer = f"verdict: PASS, all {len(judged.checks)} checks"
    if run.skipped:
        footer += "\nskipped: " + "; ".join(f"({key}) {why}" for key, why in run.skipped.items())
    return write_contact_sheet(path, rows, footer=footer)

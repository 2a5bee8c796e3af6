"""``motionkit demo``: the main job, offline, on CPU, in about two minutes.

Animates the tiny family's conditioning frame three ways and measures each video:

(a) the image model alone, frame by frame: the same pipeline with a fresh (zero-initialised) copy of
    the adapter, which is the identity, so every frame is denoised by the frozen image UNet on its own;
(b) the base model with the shipped motion adapter;
(c) the personalized variant with the same adapter, unchanged.

The models come from the tiny family (``motionkit/assets/tiny-family``), or from ``--models-dir DIR``
with the same layout (see ``motionkit.family``).

Writes ``<name>.mp4`` and ``<name>.gif`` per video and ``metrics.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from motionkit.errors import MotionkitError
from motionkit.family import ADAPTER, BASE, PERSONALIZED, TinyFamily

# What the summary calls "still moving" (mean flow, px per frame pair) and "a faithful first frame".
MIN_MOTION = 0.1
# Faithful: frame 0 matches the VAE's reconstruction of the image (issue threshold for image-to-video).
FAITHFUL_PSNR, FAITHFUL_SSIM = 30.0, 0.9


# --------------------------------------------------------------------------------------------- command

# key, file stem, heading of the table column
VARIANTS: tuple[tuple[str, str, str], ...] = (
    ("a", "a-image-model", "(a) image model"),
    ("b", "b-motion-adapter", "(b) + adapter"),
    ("c", "c-personalized", "(c) personalized"),
)
# metric key, row label, which way is better
ROWS: tuple[tuple[str, str, str], ...] = (
    ("warping_error", "warping error", "lower"),
    ("mean_abs_frame_diff", "flicker, mean |frame diff| 0-255", "lower"),
    ("temporal_flicker", "flicker score (VBench, 1 = steady)", "higher"),
    ("motion_score", "motion score, px per frame", "moving"),
    ("dynamic_degree", "dynamic degree (VBench rule)", "moving"),
    ("first_frame_psnr", "first frame PSNR vs VAE reconstruction, dB", "higher"),
    ("first_frame_ssim", "first frame SSIM vs VAE reconstruction", "higher"),
    ("first_frame_psnr_image", "first frame PSNR vs the image, dB", "higher"),
    ("vae_psnr", "VAE's own reconstruction PSNR, dB (ceiling)", "-"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="animate the bundled frame with the tiny model family and compare with the image model alone (offline)",
        description="Image-to-video with the shipped tiny family: the image model frame by frame, the base model "
        "with the motion adapter, and the personalized model with the same adapter; writes the videos and "
        "prints their metrics side by side. Offline, about two minutes on a laptop CPU.",
    )
    add = parser.add_argument
    add("--out", type=Path, default=Path("motionkit-out/demo"), help="output folder (default motionkit-out/demo)")
    add("--steps", type=int, default=25, help="denoising steps (default 25)")
    add("--frames", type=int, default=8, help="frames per video (default 8, the tiny adapter's training length)")
    add("--guidance", type=float, default=4.0, help="classifier-free guidance scale (default 4, the tiny family's)")
    add("--seed", type=int, default=0, help="random seed, the same for every video (default 0)")
    add("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    add("--attention-backend", default="auto", choices=("auto", "sdpa", "math", "xformers", "triton"),
        help="temporal attention kernel (default auto)")
    add("--models-dir", type=Path, help="a folder laid out as the tiny family (default: the one shipped with motionkit)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.frames < 2:
        raise MotionkitError(f"--frames must be at least 2 to show motion, got {args.frames}")
    if args.steps < 1:
        raise MotionkitError(f"--steps must be at least 1, got {args.steps}")
    if args.guidance < 0:
        raise MotionkitError(f"--guidance must be >= 0, got {args.guidance}")
    family = TinyFamily.find(args.models_dir)
    start = time.perf_counter()
    results = animate_family(
        family, args.out, steps=args.steps, frames=args.frames, seed=args.seed, guidance=args.guidance,
        device=args.device, attention_backend=args.attention_backend,
    )
    print()
    print(format_table(results))
    print()
    for line in verdict(results):
        print(line)
    report = {
        "models": str(family.root),
        "prompt": family.prompt,
        "settings": {"steps": args.steps, "frames": args.frames, "seed": args.seed, "guidance": args.guidance},
        "baseline": "(a) runs a fresh zero-initialised copy of the adapter: the identity, so each frame is the image model alone",
        "videos": {key: _finite(result) for key, result in results.items()},
        "seconds": round(time.perf_counter() - start, 1),
    }
    metrics = args.out / "metrics.json"
    metrics.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nvideos and {metrics.name} in {args.out} ({report['seconds']:.0f} s)")
    return 0


def animate_family(
    family: TinyFamily,
    out: Path,
    *,
    steps: int,
    frames: int,
    seed: int,
    guidance: float = 4.0,
    device: str | None = None,
    attention_backend: str = "auto",
) -> dict[str, dict[str, Any]]:
    """Make and measure the three videos; returns ``{key: metrics + paths}`` in ``VARIANTS`` order."""
    from motionkit.adapter import MotionAdapter
    from motionkit.commands.animate import assemble_pipeline, device_and_dtype, quiet_loading
    from motionkit.pipeline.loading import load_adapter_for, load_base

    device, dtype = device_and_dtype(device)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_loading():
        base = load_base(family.base, dtype=dtype, device=device)
        adapter = load_adapter_for(base, family.adapter)
    # A fresh adapter of the same shape starts as the identity (zero-initialised outputs and image branch).
    identity = MotionAdapter.from_config(adapter.config)
    print(f"animating {family.conditioning.name} from {family.root}: {frames} frames, {steps} steps, seed {seed}")
    print(f"prompt: {family.prompt or '(none: the image alone conditions the video)'}")
    results = {}
    for (key, stem, heading), model, motion in zip(VARIANTS, (BASE, BASE, PERSONALIZED), (identity, adapter, adapter)):
        if model == PERSONALIZED:
            with quiet_loading():
                base = load_base(family.personalized, dtype=dtype, device=device)
        pipe = assemble_pipeline(base, motion, attention_backend=attention_backend)
        print(f"{heading}: {model}, {'fresh identity adapter' if motion is identity else ADAPTER}")
        try:
            results[key] = _make_video(pipe, family, out / stem, frames=frames, steps=steps, seed=seed, guidance=guidance)
        finally:
            pipe.eject()  # hand the UNet back untouched for the next variant
    return results


def _make_video(
    pipe: Any, family: TinyFamily, stem: Path, *, frames: int, steps: int, seed: int, guidance: float
) -> dict[str, Any]:
    import numpy as np
    import torch

    from motionkit.metrics import evaluate_video, psnr
    from motionkit.pipeline.image_input import prepare_image
    from motionkit.video_io import write_video

    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    output = pipe(
        prompt=family.prompt,
        image=family.conditioning,
        num_frames=frames,
        height=size,
        width=size,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
        anchor_first_frame=True,  # frame 0 is the image itself, as far as the VAE can represent it
    )
    video = (np.clip(output.frames[0], 0.0, 1.0) * 255).round().astype(np.uint8)
    # The frame exactly as the pipeline saw it (resized and centre-cropped), and the VAE's round trip
    # of it: a first frame can be no closer to the image than the VAE's own reconstruction.
    seen = prepare_image(family.conditioning, size, size, pipe.image_processor).to(pipe.vae.device, pipe.vae.dtype)
    with torch.no_grad():
        recon = pipe.vae.decode(pipe.vae.encode(seen).latent_dist.mode()).sample
    image, reconstruction = (_to_uint8(t[0]) for t in (seen, recon))
    written = [str(write_video(video, stem.with_suffix(suffix), fps=8)) for suffix in (".mp4", ".gif")]
    return {
        **evaluate_video(video, reconstruction),
        "first_frame_psnr_image": psnr(video[0], image),
        "vae_psnr": psnr(reconstruction, image),
        "files": written,
    }


def _to_uint8(image: Any) -> Any:
    """``[3, H, W]`` in [-1, 1] to uint8 ``[H, W, 3]``."""
    return ((image.float().permute(1, 2, 0).cpu().numpy() + 1.0) * 127.5).round().clip(0, 255).astype("uint8")


# --------------------------------------------------------------------------------------------- report


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """The metrics of every video side by side, one row per metric."""
    from motionkit.commands.eval import format_value

    headings = [heading for key, _, heading in VARIANTS if key in results]
    rows = [
        [label, better] + [format_value(results[key].get(metric)) for key, _, _ in VARIANTS if key in results]
        for metric, label, better in ROWS
    ]
    header = ["metric", "better"] + headings
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    note = "(a) = the same pipeline with a fresh zero-initialised adapter (the identity): the image model, frame by frame"
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows), note])


def verdict(results: dict[str, dict[str, Any]]) -> list[str]:
    """One line per adapted video: is it steadier than (a), still moving, and true to the first frame?"""
    a = results["a"]
    lines, shown = [], []
    for key, _, heading in VARIANTS[1:]:
        r = results[key]
        steadier = r["warping_error"] < a["warping_error"] and r["mean_abs_frame_diff"] < a["mean_abs_frame_diff"]
        moving = r["motion_score"] >= MIN_MOTION
        faithful = r["first_frame_psnr"] >= FAITHFUL_PSNR and r["first_frame_ssim"] >= FAITHFUL_SSIM
        shown.append(steadier and moving and faithful)
        lines.append(
            f"{heading} vs (a): {'shown' if shown[-1] else 'NOT shown'}: "
            f"warping error {_ratio(a['warping_error'], r['warping_error'])}, "
            f"flicker {_ratio(a['mean_abs_frame_diff'], r['mean_abs_frame_diff'])}; "
            f"{'still moving' if moving else 'barely moving'} ({r['motion_score']:.2f} px per frame); "
            f"first frame {'faithful' if faithful else 'off'} "
            f"({r['first_frame_psnr']:.1f} dB, SSIM {r['first_frame_ssim']:.2f})"
        )
    if not all(shown):
        lines.append("(trained models show these; a random stand-in folder makes noise, so only its mechanics can be checked)")
    return lines


def _ratio(baseline: float, value: float) -> str:
    if not (math.isfinite(baseline) and math.isfinite(value)) or value <= 0:
        return f"{value:.4g} vs {baseline:.4g}"
    factor = baseline / value
    return f"{factor:.1f}x lower" if factor >= 1 else f"{1 / factor:.1f}x higher"


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    # JSON has no infinity or NaN: an exact first frame (PSNR inf) becomes null.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}

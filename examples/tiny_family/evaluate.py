"""Measure what the tiny family's motion adapter adds (the numbers in MODEL_CARD.md).

Text-to-video: the same prompts, seeds and sampler, once with the trained adapter and once with a fresh
(zero-initialised, so identity) adapter of the same shape, which is exactly the image model run frame by
frame. Image-to-video: world frames the models never saw condition the trained adapter; frame 0 is compared
with the image. Metrics are ``motionkit.metrics.evaluate_video`` (Farneback flow, weight-free).

    python examples/tiny_family/evaluate.py --family motionkit/assets/tiny-family --out motionkit-out/tiny-family/eval
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from motionkit.data.world import caption, random_spec, render_clip, render_clips
from motionkit.metrics import evaluate_video
from motionkit.noise_prior import FRAME_NOISE_MEANS, text_to_video_noise
from motionkit.pipeline.free_init import set_free_init_passes
from motionkit.video_io import write_video

# World clips of each style to compare the personalized model's frames with (not a training seed).
STYLE_SEED = 5151
# The adapted personalized frames may be this much farther (histogram distance, 0..1) from the neon style.
STYLE_MARGIN = 0.05
KEYS = ("warping_error", "temporal_flicker", "mean_abs_frame_diff", "motion_score")


def sample(pipe, prompt: str, seed: int, args: argparse.Namespace, image=None, anchor: bool | None = None) -> np.ndarray:
    # FreeInit is text-to-video's, as the noise prior is (motionkit animate applies a declared value likewise).
    set_free_init_passes(pipe, args.free_init if image is None else 0)
    frames = pipe(
        prompt,
        image=image,
        anchor_first_frame=anchor,
        num_frames=args.frames,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        **text_to_video_noise(args.noise_correlation, args.frame_noise_means, conditioned=image is not None),
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).frames[0]
    return (np.asarray(frames) * 255).round().clip(0, 255).astype(np.uint8)


def mean_report(reports: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in reports])) for k in reports[0] if isinstance(reports[0][k], (int, float))}


def style_distances(videos: list[np.ndarray], styles: dict[str, list[np.ndarray]]) -> dict[str, float]:
    """Lab-histogram distance (0..1) of the videos' frames, side by side, to each style's clips' frames."""
    from motionkit.metrics import histogram_distance

    made = np.concatenate([frame for video in videos for frame in video], axis=1)
    return {name: histogram_distance(made, np.concatenate([frame for clip in clips for frame in clip], axis=1))
            for name, clips in styles.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", type=Path, required=True, help="the family folder (bases/, adapters/)")
    parser.add_argument("--base", default="tiny-base")
    parser.add_argument("--personalized", default="tiny-personalized")
    parser.add_argument("--style-prompts", type=int, default=4, help="text-to-video prompts for the style check")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=8, help="world captions to sample (text-to-video and i2v)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1234, help="world specs the models never saw")
    parser.add_argument("--noise-correlation", type=float, help="starting noise shared between frames, text-to-video "
                        "(default: the family's motionkit-app.json, else 0)")
    parser.add_argument("--frame-noise-means", choices=FRAME_NOISE_MEANS, help="text-to-video's frame noise means "
                        "(default: the family's motionkit-app.json, else drawn)")
    parser.add_argument("--free-init", type=int, help="text-to-video's FreeInit passes, 0 or 1 for one pass "
                        "(default: the family's motionkit-app.json, else 0)")
    args = parser.parse_args()
    # The family's declared sampling values, read as the app and the demo read them (with their fallbacks).
    from motionkit.app.defaults import page_defaults
    from motionkit.models_folder import ModelsFolder

    declared = page_defaults(ModelsFolder(args.family))
    if args.noise_correlation is None:
        args.noise_correlation = float(declared.noise_correlation)
    if args.frame_noise_means is None:
        args.frame_noise_means = declared.frame_noise_means
    if args.free_init is None:
        args.free_init = declared.free_init

    from motionkit.adapter import MotionAdapter
    from motionkit.formats import load_adapter
    from motionkit.formats.motionkit_format import plain_config
    from motionkit.pipeline import MotionPipeline
    from motionkit.pipeline.loading import load_base

    torch.manual_seed(0)
    start = time.perf_counter()
    components = load_base(args.family / "bases" / args.base, dtype=torch.float32)
    trained = load_adapter(args.family / "adapters" / "tiny-motion", torch_dtype=torch.float32)
    # A fresh adapter is the identity (zero-initialised outputs): the image model, frame by frame.
    fresh = MotionAdapter(**plain_config(trained))
    rng = np.random.default_rng(args.seed)
    specs = [random_spec(rng, frames=args.frames * 2) for _ in range(args.prompts)]
    args.out.mkdir(parents=True, exist_ok=True)

    results: dict[str, list[dict]] = {"with_adapter": [], "image_model": [], "i2v": [], "i2v_anchored": []}
    for label, adapter in (("with_adapter", trained), ("image_model", fresh)):
        pipe = MotionPipeline.from_components(components, adapter)
        pipe.set_progress_bar_config(disable=True)
        for i, spec in enumerate(specs):
            frames = sample(pipe, caption(spec), 100 + i, args)
            results[label].append(evaluate_video(frames))
            if i < 4:
                write_video(frames, args.out / f"t2v-{label}-{i}.gif", fps=8)
        if label == "with_adapter":
            # i2v: the trained conditioning branch alone, then also with frame 0 pinned to the image latent.
            for name, anchor in (("i2v", None), ("i2v_anchored", True)):
                for i, spec in enumerate(specs):
                    image = render_clip(spec)[0]
                    frames = sample(pipe, caption(spec), 200 + i, args, image=image, anchor=anchor)
                    results[name].append(evaluate_video(frames, image))
                    if i < 4:
                        write_video(frames, args.out / f"{name}-{i}.gif", fps=8)
        pipe.eject()

    # The personalized variant keeps its style under the same adapter: its text-to-video frames stay as close
    # to its "neon" training images (pooled Lab histograms) as the personalized image model's own frames are.
    personalized = load_base(args.family / "bases" / args.personalized, dtype=torch.float32)
    style_videos: dict[str, list[np.ndarray]] = {"personalized_with_adapter": [], "personalized_image_model": []}
    for label, adapter in (("personalized_with_adapter", trained), ("personalized_image_model", fresh)):
        pipe = MotionPipeline.from_components(personalized, adapter)
        pipe.set_progress_bar_config(disable=True)
        for i, spec in enumerate(specs[: args.style_prompts]):
            style_videos[label].append(sample(pipe, caption(spec), 300 + i, args))
        write_video(style_videos[label][0], args.out / f"t2v-{label}-0.gif", fps=8)
        pipe.eject()
    styles = {style: render_clips(16, STYLE_SEED, frames=4, size=64, style=style)[0] for style in ("neon", "natural")}
    style = {label: style_distances(videos, styles) for label, videos in style_videos.items()}
    adapted, alone = style["personalized_with_adapter"], style["personalized_image_model"]
    style["kept"] = bool(adapted["neon"] < adapted["natural"] and adapted["neon"] <= alone["neon"] + STYLE_MARGIN)

    summary = {name: mean_report(reports) for name, reports in results.items()}
    summary["style"] = style
    summary["settings"] = {**{k: v for k, v in vars(args).items() if k not in ("family", "out")}, "seconds": round(time.perf_counter() - start, 1)}
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    for name in ("with_adapter", "image_model"):
        print(f"t2v {name:13s}" + "".join(f"  {k} {summary[name][k]:.4f}" for k in KEYS))
    for label in ("personalized_with_adapter", "personalized_image_model"):
        print(f"style {label}: histogram distance to neon {style[label]['neon']:.3f}, to natural {style[label]['natural']:.3f}")
    print(f"style kept under the adapter: {'yes' if style['kept'] else 'NO'}")
    for name in ("i2v", "i2v_anchored"):
        i2v = summary[name]
        print(f"{name:17s} first_frame_psnr {i2v['first_frame_psnr']:.2f} dB" + "".join(f"  {k} {i2v[k]:.4f}" for k in KEYS))


if __name__ == "__main__":
    main()

"""Does the MotionLoRA move the camera? The family's zoom-in MotionLoRA against its adapter alone, on world scenes
it never saw.

For held-out landscapes (world seed ``--seed``, never a training seed), the same scene is rendered twice by the
world, with a still camera and zooming in (the reference), and its still frame 0 is animated by ``motionkit
animate`` with the family's defaults, once with the adapter alone and once with ``--motion-lora LORA`` (same
seed, same prompt). The prompt is the scene's caption with its camera words taken out, so only the LoRA can ask
for the move. For context, the adapter alone is also given the caption with ", camera zooming in": does the adapter
itself zoom when asked? ``--text-to-video`` animates the same prompts without the image as well.

``motionkit.metrics.camera_zoom`` reads how much each video magnifies from frame 0 to the last. Waves and clouds
bias it alike for every video of one scene, so videos are compared with the other videos of their scene: the
LoRA's effect is the mean over scenes of log(zoom with) - log(zoom without), the world's is log(zoom in) -
log(zoom still) of the real clips. Target: the LoRA's effect is at least half the world's. The words' effect is
log(zoom with the words) - log(zoom without), reported beside it.

    python examples/tiny_family/evaluate_motion_lora.py --family motionkit/assets/tiny-family \\
        --out motionkit-out/tiny-family/eval-motion-lora [--text-to-video] [ANIMATE FLAGS]

Writes ``report.json``, a markdown table (also printed) and ``contact_sheet.png`` (still, zooming and the
generated rows for the first scenes).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from family_runs import animate, evaluation_parser, parse_evaluation_args

HELD_OUT_SEED = 424250
ZOOM_SPEED = 0.04  # the middle of the world's landscape zoom speeds (0.03-0.05): 2 % a rendered frame
SHARE_OF_WORLD = 0.5
# The videos of each scene: name, contact-sheet label, which prompt, flags ("LORA" stands for --lora's value).
RUNS = (
    ("without", "adapter alone", "prompt", []),
    ("with", "with the LoRA", "prompt", ["--motion-lora", "LORA"]),
    ("words", "asked to zoom", "prompt_with_move", []),
)


def prompt_without_camera(caption: str, camera_phrase: str) -> str:
    """The caption without its camera words (``", static camera"`` and the like)."""
    for text in (f", {camera_phrase}", camera_phrase):
        if text in caption:
            return caption.replace(text, "").strip(" ,")
    raise SystemExit(f"caption {caption!r} does not name its camera ({camera_phrase!r})")


def scenes(count: int, seed: int, frames: int, stride: int, size: int) -> list[dict]:
    """``count`` held-out landscapes, each as a still clip, a zooming clip, the prompt without camera words and
    the prompt that asks for the zoom."""
    from motionkit.data.world.common import camera_for, camera_words
    from motionkit.data.world.landscape import random_landscape_spec
    from motionkit.data.world.scene import caption, render_clip

    rng = np.random.default_rng(seed)
    rendered = (frames - 1) * stride + 1
    out = []
    for _ in range(count):
        spec = random_landscape_spec(rng, frames=rendered, size=size)
        still = replace(spec, camera=camera_for("static"))
        zooming = replace(spec, camera=camera_for("zoom in", ZOOM_SPEED))
        prompt = prompt_without_camera(caption(still), camera_words(still.camera))
        out.append({
            "prompt": prompt,
            "prompt_with_move": f"{prompt}, {camera_words(zooming.camera)}",
            "still": render_clip(still)[::stride],
            "zooming": render_clip(zooming)[::stride],
        })
    return out


def log_effect(pairs: list[tuple[float, float]]) -> float:
    """Mean over scenes of log(a) - log(b): how much more ``a`` magnifies than ``b``, as a log factor."""
    return float(np.mean([math.log(a) - math.log(b) for a, b in pairs]))


def main(argv: list[str] | None = None) -> int:
    parser = evaluation_parser(__doc__, HELD_OUT_SEED, "scene", 8, 3)
    parser.add_argument("--lora", help="PATH[:SCALE]; default: FAMILY/loras/tiny-zoom-in.safetensors")
    parser.add_argument("--text-to-video", action="store_true", help="also animate the prompts without the image")
    args, extra = parse_evaluation_args(parser, argv)
    args.lora = args.lora or str(args.family / "loras" / "tiny-zoom-in.safetensors")

    from PIL import Image

    from motionkit.evaluation_files import run_settings, write_evaluation
    from motionkit.metrics import camera_zoom

    work = args.out / "videos"
    work.mkdir(parents=True, exist_ok=True)
    modes = ["image-to-video"] + (["text-to-video"] if args.text_to_video else [])
    rows, sheet = [], []
    for index, scene in enumerate(scenes(args.count, args.seed, args.clip_frames, args.stride, args.size)):
        image_path = work / f"scene-{index:03d}-frame0.png"
        Image.fromarray(scene["still"][0]).save(image_path)
        row = {"prompt": scene["prompt"], "real_still": camera_zoom(scene["still"]),
               "real_zooming": camera_zoom(scene["zooming"])}
        videos = {}
        for mode in modes:
            image = image_path if mode == "image-to-video" else None
            for name, _, prompt, flags in RUNS:
                flags = [args.lora if flag == "LORA" else flag for flag in flags]
                video = animate(args.base, args.adapter, scene[prompt], args.sample_seed + index,
                                work / f"scene-{index:03d}-{mode}-{name}", [*(["--image", str(image)] if image else []), *extra, *flags])
                videos[mode, name] = video
                row[f"{mode} {name}"] = camera_zoom(video)
        rows.append(row)
        if index < args.shown:
            sheet += [(f"{index} still", scene["still"]), (f"{index} zooming in", scene["zooming"])]
            sheet += [(f"{index} {mode} {label}", videos[mode, name]) for mode in modes for name, label, _, _ in RUNS]
        print(f"scene {index}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "prompt"), flush=True)

    world = log_effect([(r["real_zooming"], r["real_still"]) for r in rows])
    effects = {mode: log_effect([(r[f"{mode} with"], r[f"{mode} without"]) for r in rows]) for mode in modes}
    words = {mode: log_effect([(r[f"{mode} words"], r[f"{mode} without"]) for r in rows]) for mode in modes}
    passed = {mode: bool(effect >= SHARE_OF_WORLD * world) for mode, effect in effects.items()}
    lines = [
        "| videos | zoom, frame 0 to last (mean over scenes) | effect vs its pair, x | target | met |",
        "| --- | --- | --- | --- | --- |",
        f"| real, still camera | {np.mean([r['real_still'] for r in rows]):.3f} | - | - | - |",
        f"| real, zooming in | {np.mean([r['real_zooming'] for r in rows]):.3f} | {math.exp(world):.3f} | - | - |",
    ]
    for mode in modes:
        lines.append(f"| {mode}, adapter alone | {np.mean([r[f'{mode} without'] for r in rows]):.3f} | - | - | - |")
        lines.append(f"| {mode}, with the MotionLoRA | {np.mean([r[f'{mode} with'] for r in rows]):.3f} | "
                     f"{math.exp(effects[mode]):.3f} | >= {math.exp(SHARE_OF_WORLD * world):.3f} | "
                     f"{'yes' if passed[mode] else 'NO'} |")
        lines.append(f"| {mode}, adapter alone asked to zoom in the prompt (context) | {np.mean([r[f'{mode} words'] for r in rows]):.3f} | "
                     f"{math.exp(words[mode]):.3f} | - | - |")
    table = "\n".join(lines)
    report = {"settings": run_settings(args, extra), "world_effect": math.exp(world),
              "effects": {mode: math.exp(effect) for mode, effect in effects.items()},
              "words_effects": {mode: math.exp(effect) for mode, effect in words.items()}, "passed": passed, "scenes": rows}
    write_evaluation(args.out, report, table, sheet)
    print(f"\n{table}\n\nthe MotionLoRA's zoom is visible: {'yes' if all(passed.values()) else 'NO'}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where does the tiny family's world end? The image model's denoising error on world frames it never saw, beside
photos, and the limit the family's ``motionkit-app.json`` declares for unfamiliar images.

``MotionPipeline.image_denoising_error`` (``motionkit.pipeline.image_familiarity``) is measured, for each base of
``--bases``, on frame 0 of ``--frames`` held-out world clips in the style that base draws (world seed ``--seed``,
both kinds of scene) and on every photo in ``--photos`` folders. The limit the family should declare for it (a
percentile of the world frames' errors, rounded up to two significant digits) is printed beside the declared one,
with how many world frames and photos each flags. A world frame above the limit is animated with the photo settings (it holds the image, with less motion), a photo
below it with the world defaults (repainted into the world, unless it is close to it): the limit is the error
``WORLD_KEPT`` of world frames stay under, the usual way to set an out-of-distribution detector's threshold.

    python examples/tiny_family/calibrate_familiarity.py --family motionkit/assets/tiny-family \\
        --photos motionkit/assets/examples/photos --out motionkit-out/tiny-family/familiarity

Writes ``report.json`` (every image's error), a markdown table (also printed) and ``contact_sheet.png`` (the most and
least familiar world frames, then the photos).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

HELD_OUT_SEED = 515151
WORLD_KEPT = 0.99  # the share of world frames kept on the world defaults
SHOWN = 8  # images a contact-sheet row shows
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def suggested_limit(world_errors: list[float]) -> float:
    """The ``WORLD_KEPT`` percentile of the world frames' errors, rounded up to two significant digits."""
    top = float(np.percentile(world_errors, 100 * WORLD_KEPT))
    scale = 10 ** (math.floor(math.log10(top)) - 1)
    return math.ceil(top / scale) * scale


def base_styles(text: str) -> list[tuple[str, str]]:
    """``--bases``'s value: ``NAME:STYLE`` pairs, comma-separated (a base and the world style it draws)."""
    from motionkit.data.world import STYLES

    pairs = [tuple(part.strip().split(":", 1)) for part in text.split(",") if part.strip()]
    if not pairs or any(len(pair) != 2 or pair[1] not in STYLES for pair in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME:STYLE pairs, comma-separated, styles among {', '.join(STYLES)}")
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", type=Path, default=Path("motionkit/assets/tiny-family"))
    parser.add_argument("--bases", type=base_styles, default=base_styles("tiny-base:natural,tiny-personalized:neon"),
                        help="the family's bases to calibrate, each with the world style it draws (NAME:STYLE,...)")
    parser.add_argument("--frames", type=int, default=400, help="held-out world frames to measure per base")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="world seed of the held-out frames")
    parser.add_argument("--photos", type=Path, action="append", default=[], help="a folder of photos (repeatable)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.frames < 1:
        raise SystemExit(f"--frames must be at least 1, got {args.frames}")

    import torch

    from motionkit.data.world import random_specs
    from motionkit.data.world.scene import render_clip
    from motionkit.evaluation_files import write_evaluation
    from motionkit.metrics import fit_image
    from motionkit.model_defaults import read_declaration
    from motionkit.pipeline import MotionPipeline
    from motionkit.pipeline.image_familiarity import DECLARED_KEY, rule_limits
    from motionkit.pipeline.image_input import load_image

    torch.manual_seed(0)
    declaration = read_declaration(args.family)
    declared = declaration.settings.get(DECLARED_KEY) if declaration is not None else None
    declared_limits = rule_limits(declared, str(args.family)) if declared is not None else {}
    paths = []
    for folder in args.photos:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not found:
            raise SystemExit(f"{folder}: no photos ({', '.join(PHOTO_SUFFIXES)}) to measure")
        paths += found
    lines = ["| base | images | denoising error at t = 500 |", "| --- | --- | --- |"]
    notes, report, sheet = [], {"world_seed": args.seed, "bases": {}}, []
    for name, style in args.bases:
        pipe = MotionPipeline.from_pretrained(args.family / "bases" / name, args.family / "adapters" / "tiny-motion")
        pipe.set_progress_bar_config(disable=True)
        frames = [render_clip(spec)[0] for spec in random_specs(args.frames, args.seed, frames=1, style=style)]
        world = [pipe.image_denoising_error(frame) for frame in frames]
        photos = {str(p): pipe.image_denoising_error(p) for p in paths}
        limit = suggested_limit(world)
        declared_limit = declared_limits.get(None, declared_limits.get(name))

        def flagged(at: float | None) -> str:
            if at is None:
                return "-"
            above = sum(e > at for e in world)
            return f"{above} / {len(world)} world frames, {sum(e > at for e in photos.values())} / {len(photos)} photos"

        pct = np.percentile(world, [50, 90, 99]).tolist()
        lines += [f"| {name} | {len(world)} held-out {style} world frames (seed {args.seed}): median / 90th / 99th "
                  f"percentile / largest | {pct[0]:.4f} / {pct[1]:.4f} / {pct[2]:.4f} / {max(world):.4f} |"]
        lines += [f"| {name} | photo {Path(p).name} | {e:.4f} |" for p, e in photos.items()]
        notes += [f"{name}: suggested limit (the {100 * WORLD_KEPT:g}th percentile of its world frames'): {limit:g}, "
                  f"above it: {flagged(limit)}; declared: "
                  + (f"{declared_limit:g}, above it: {flagged(declared_limit)}" if declared_limit is not None else "none")]
        report["bases"][name] = {"style": style, "world": world, "photos": photos, "suggested_limit": limit,
                                 "declared_limit": declared_limit}
        order = np.argsort(world)
        sheet += [(f"{name}: most familiar", np.stack([frames[i] for i in order[:SHOWN]])),
                  (f"{name}: least familiar", np.stack([frames[i] for i in order[::-1][:SHOWN]]))]
    size = sheet[0][1].shape[1:3]
    photo_frames = [fit_image(load_image(p), *size) for p in paths]
    sheet += [("photos", np.stack(photo_frames[i:i + SHOWN])) for i in range(0, len(photo_frames), SHOWN)]
    table = "\n".join([*lines, "", *notes])
    print(table)
    write_evaluation(args.out, report, table, sheet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where does the tiny family's world end? The image model's denoising error and the colour distance to the world's
palette on world frames it never saw, beside photos, and the limits the family's ``motionkit-app.json`` declares
for unfamiliar images.

Both signals of ``motionkit.pipeline.image_familiarity`` are measured, for each base of ``--bases``, on frame 0 of
``--frames`` held-out world clips in the style that base draws (world seed ``--seed``, both kinds of scene) and on
every photo in ``--photos`` folders: ``MotionPipeline.image_denoising_error``, and the colour distance to the
nearest frame of the family's palette (``motionkit.colour_reference``: frame 0 of ``--palette-frames`` clips of the
world the base learnt, world seed ``--palette-seed``). ``--write-palette`` (re)writes the palette file the
declaration names first. The limits the family should declare (a percentile of the world frames' values, rounded
up to two significant digits) are printed beside the declared ones, with how many world frames and photos each
flags, alone and together. A world frame above a limit is animated with the photo settings (it holds the image,
with less motion), a photo below both with the world defaults (repainted into the world, unless it is close to
it): each limit is the value ``WORLD_KEPT`` of world frames stay under, the usual way to set an
out-of-distribution detector's threshold.

    python examples/tiny_family/calibrate_familiarity.py --family motionkit/assets/tiny-family --write-palette \\
        --photos motionkit/assets/examples/photos --out motionkit-out/tiny-family/familiarity

Writes ``report.json`` (every image's values), a markdown table (also printed) and ``contact_sheet.png`` (the most
and least familiar world frames by each signal, then the photos).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

HELD_OUT_SEED = 515151
PALETTE_SEED = 0  # the world seed the family's image models trained on
PALETTE_FRAMES = 400
WORLD_KEPT = 0.99  # the share of world frames kept on the world defaults
SHOWN = 8  # images a contact-sheet row shows
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
DEFAULT_PALETTE = "world-palette.safetensors"


def suggested_limit(world_values: list[float]) -> float:
    """The ``WORLD_KEPT`` percentile of the world frames' values, rounded up to two significant digits."""
    top = float(np.percentile(world_values, 100 * WORLD_KEPT))
    scale = 10 ** (math.floor(math.log10(top)) - 1)
    return math.ceil(top / scale) * scale


def base_styles(text: str) -> list[tuple[str, str]]:
    """``--bases``'s value: ``NAME:STYLE`` pairs, comma-separated (a base and the world style it draws)."""
    from motionkit.data.world import STYLES

    pairs = [tuple(part.strip().split(":", 1)) for part in text.split(",") if part.strip()]
    if not pairs or any(len(pair) != 2 or pair[1] not in STYLES for pair in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME:STYLE pairs, comma-separated, styles among {', '.join(STYLES)}")
    return pairs


def world_frames(count: int, seed: int, style: str) -> np.ndarray:
    """Frame 0 of ``count`` world clips of ``style`` drawn from world seed ``seed``."""
    from motionkit.data.world import random_specs
    from motionkit.data.world.scene import render_clip

    return np.stack([render_clip(spec)[0] for spec in random_specs(count, seed, frames=1, style=style)])


def _photo_paths(folders: list[Path]) -> list[Path]:
    paths = []
    for folder in folders:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not found:
            raise SystemExit(f"{folder}: no photos ({', '.join(PHOTO_SUFFIXES)}) to measure")
        paths += found
    return paths


def _flagged(world: list[float], photos: dict[str, float], at: float | None) -> str:
    if at is None:
        return "-"
    above = sum(v > at for v in world)
    return f"{above} / {len(world)} world frames, {sum(v > at for v in photos.values())} / {len(photos)} photos"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", type=Path, default=Path("motionkit/assets/tiny-family"))
    parser.add_argument("--bases", type=base_styles, default=base_styles("tiny-base:natural,tiny-personalized:neon"),
                        help="the family's bases to calibrate, each with the world style it draws (NAME:STYLE,...)")
    parser.add_argument("--frames", type=int, default=400, help="held-out world frames to measure per base")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="world seed of the held-out frames")
    parser.add_argument("--palette-frames", type=int, default=PALETTE_FRAMES, help="world frames in each base's palette")
    parser.add_argument("--palette-seed", type=int, default=PALETTE_SEED, help="world seed of the palette's frames")
    parser.add_argument("--write-palette", action="store_true",
                        help="write the palette file the declaration names (default world-palette.safetensors) first")
    parser.add_argument("--photos", type=Path, action="append", default=[], help="a folder of photos (repeatable)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    for flag in ("frames", "palette_frames"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.seed == args.palette_seed:
        raise SystemExit(f"--seed and --palette-seed are both {args.seed}: the held-out frames would be the palette's own")

    import json

    import torch

    from motionkit.colour_reference import colour_distance, palette_histograms, read_palette, read_palettes, write_palette
    from motionkit.errors import MotionkitError
    from motionkit.evaluation_files import write_evaluation
    from motionkit.metrics import fit_image
    from motionkit.model_defaults import DECLARATION, read_declaration
    from motionkit.pipeline import MotionPipeline
    from motionkit.pipeline.image_familiarity import COLOUR_LIMIT_KEY, DECLARED_KEY, PALETTE_KEY, rule_limits
    from motionkit.pipeline.image_input import load_image

    torch.manual_seed(0)
    raw = json.loads((args.family / DECLARATION).read_text()) if (args.family / DECLARATION).is_file() else {}
    palette_file = args.family / (raw.get(DECLARED_KEY) or {}).get(PALETTE_KEY, DEFAULT_PALETTE)
    if args.write_palette:  # before the declaration is read, which checks the palette it names
        kept = {}
        if palette_file.is_file():  # other bases' histograms stay: a palette for some bases is not a new palette
            try:
                kept = {k: v for k, v in read_palettes(palette_file).items() if k not in dict(args.bases)}
            except MotionkitError as err:
                print(f"{err}; writing a new palette")
        write_palette(palette_file, {**kept, **{name: palette_histograms(world_frames(args.palette_frames, args.palette_seed, style))
                                                for name, style in args.bases}})
        print(f"wrote {palette_file}: {args.palette_frames} world frames (seed {args.palette_seed}) for "
              f"{', '.join(name for name, _ in args.bases)}" + (f"; kept {', '.join(kept)}" if kept else ""))
    declaration = read_declaration(args.family)
    declared = (declaration.settings.get(DECLARED_KEY) if declaration is not None else None) or {}
    error_limits = rule_limits(declared, str(args.family)) if declared else {}
    colour_limits = rule_limits(declared, str(args.family), COLOUR_LIMIT_KEY) if declared else {}
    paths = _photo_paths(args.photos)
    lines = ["| base | images | denoising error at t = 500 | colour distance to the palette |", "| --- | --- | --- | --- |"]
    notes, report, sheet = [], {"world_seed": args.seed, "palette_seed": args.palette_seed, "bases": {}}, []
    for name, style in args.bases:
        pipe = MotionPipeline.from_pretrained(args.family / "bases" / name, args.family / "adapters" / "tiny-motion")
        pipe.set_progress_bar_config(disable=True)
        frames = world_frames(args.frames, args.seed, style)
        size = frames.shape[1:3]
        palette = read_palette(palette_file, name)
        signals = {
            "denoising error": ([pipe.image_denoising_error(frame) for frame in frames],
                                {str(p): pipe.image_denoising_error(p) for p in paths}, error_limits),
            "colour distance": ([colour_distance(frame, palette) for frame in frames],
                                {str(p): colour_distance(fit_image(load_image(p), *size), palette) for p in paths},
                                colour_limits),
        }
        cells, found = [], {}
        for signal, (world, photos, limits) in signals.items():
            pct = np.percentile(world, [50, 90, 99]).tolist()
            cells.append(f"{pct[0]:.4f} / {pct[1]:.4f} / {pct[2]:.4f} / {max(world):.4f}")
            suggested, declared_limit = suggested_limit(world), limits.get(None, limits.get(name))
            notes.append(f"{name}, {signal}: suggested limit (the {100 * WORLD_KEPT:g}th percentile of its world frames'): "
                         f"{suggested:g}, above it: {_flagged(world, photos, suggested)}; declared: "
                         + (f"{declared_limit:g}, above it: {_flagged(world, photos, declared_limit)}"
                            if declared_limit is not None else "none"))
            found[signal] = {"world": world, "photos": photos, "suggested_limit": suggested, "declared_limit": declared_limit}
            order = np.argsort(world)
            sheet += [(f"{name}: most familiar by {signal}", frames[order[:SHOWN]]),
                      (f"{name}: least familiar by {signal}", frames[order[::-1][:SHOWN]])]
        lines.append(f"| {name} | {len(frames)} held-out {style} world frames (seed {args.seed}): median / 90th / 99th "
                     f"percentile / largest | {cells[0]} | {cells[1]} |")
        error, colour = found["denoising error"], found["colour distance"]
        lines += [f"| {name} | photo {Path(p).name} | {e:.4f} | {colour['photos'][p]:.4f} |" for p, e in error["photos"].items()]
        if error["declared_limit"] is not None and colour["declared_limit"] is not None:
            either = [e > error["declared_limit"] or c > colour["declared_limit"] for e, c in zip(error["world"], colour["world"])]
            caught = [p for p in paths if error["photos"][str(p)] > error["declared_limit"]
                      or colour["photos"][str(p)] > colour["declared_limit"]]
            notes.append(f"{name}, either declared limit: {sum(either)} / {len(either)} world frames, "
                         f"{len(caught)} / {len(paths)} photos ({', '.join(p.name for p in caught) or 'none'})")
        report["bases"][name] = {"style": style, **{signal.replace(" ", "_"): v for signal, v in found.items()}}
    photo_frames = [fit_image(load_image(p), *size) for p in paths]  # the last base's frame size
    sheet += [("photos", np.stack(photo_frames[i:i + SHOWN])) for i in range(0, len(photo_frames), SHOWN)]
    table = "\n".join([*lines, "", *notes])
    print(table)
    write_evaluation(args.out, report, table, sheet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

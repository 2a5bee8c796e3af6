"""What the tiny family's evaluation scripts share: their common flags, and one ``motionkit animate`` run, in this
process, to a folder of lossless PNG frames, read back. Library code may not call the command line, so this lives
beside the scripts: Python puts a script's own folder first on ``sys.path``, which is how they import it."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def evaluation_parser(doc: str, held_out_seed: int, unit: str, count: int, shown: int) -> argparse.ArgumentParser:
    """A parser with the flags every evaluation takes: the family and its models, how many held-out ``unit``s
    ("clip", "scene") it animates (``--clips``, default ``count``) and shows on the contact sheet
    (``--sheet-clips``, default ``shown``), the held-out world's seed and the real clips' shape, the sampling
    seed and ``--out``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog="Other flags go to motionkit animate.")
    parser.add_argument("--family", type=Path, default=Path("motionkit/assets/tiny-family"))
    parser.add_argument("--base", type=Path, help="default: FAMILY/bases/tiny-base")
    parser.add_argument("--adapter", type=Path, help="default: FAMILY/adapters/tiny-motion")
    parser.add_argument(f"--{unit}s", type=int, default=count, dest="count", help=f"held-out {unit}s to animate")
    parser.add_argument(f"--sheet-{unit}s", type=int, default=shown, dest="shown", help=f"{unit}s shown in the contact sheet")
    parser.add_argument("--clip-frames", type=int, default=8, help="frames rendered per real clip (the family's frame count)")
    parser.add_argument("--stride", type=int, default=2, help="rendered frames between video frames (training's)")
    parser.add_argument("--size", type=int, default=64, help="the family's native size")
    parser.add_argument("--seed", type=int, default=held_out_seed, help=f"world seed of the held-out {unit}s")
    parser.add_argument("--sample-seed", type=int, default=0, help=f"seed of the first {unit}'s videos; one more per {unit}")
    parser.add_argument("--out", type=Path, required=True)
    parser.set_defaults(count_flag=f"--{unit}s")
    return parser


def scene_kinds(text: str) -> tuple[str, ...]:
    """``--kinds``'s value: world scene kinds, comma-separated; an unknown or empty one is refused in one line."""
    from motionkit.data.world import KINDS

    kinds = tuple(kind.strip() for kind in text.split(",") if kind.strip())
    if not kinds or any(kind not in KINDS for kind in kinds):
        raise argparse.ArgumentTypeError(f"{text!r}: give world scene kinds among {', '.join(KINDS)}, comma-separated")
    return kinds


def add_kinds_flag(parser: argparse.ArgumentParser) -> None:
    """``--kinds``: which of the world's scene kinds the held-out clips are drawn from (default: both, as trained)."""
    parser.add_argument("--kinds", type=scene_kinds, default=scene_kinds("landscape,pattern"),
                        help="world scene kinds, comma-separated (default: the family's training world, both)")


def parse_evaluation_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The parsed flags, with ``--base`` and ``--adapter`` defaulting to the family's, and the flags left over,
    which go to ``motionkit animate``. Fewer than one clip or scene is refused in one line."""
    args, extra = parser.parse_known_args(argv)
    if args.count < 1:
        raise SystemExit(f"{args.count_flag} must be at least 1, got {args.count}")
    args.base = args.base or args.family / "bases" / "tiny-base"
    args.adapter = args.adapter or args.family / "adapters" / "tiny-motion"
    return args, extra


def animate(base: Path, adapter: Path, prompt: str, seed: int, out: Path, flags: list[str]) -> np.ndarray:
    """``motionkit animate --base BASE --adapter ADAPTER --prompt PROMPT --seed SEED --out OUT/ FLAGS...``;
    the frames it wrote, uint8 ``[F, H, W, 3]``. A failed run stops the script with the command line."""
    from motionkit.cli import main as motionkit_main
    from motionkit.video_io import read_video

    argv = ["animate", "--base", str(base), "--adapter", str(adapter), "--prompt", prompt, "--seed", str(seed),
            "--out", f"{out}/", *flags]
    if motionkit_main(argv) != 0:
        raise SystemExit(f"motionkit {' '.join(argv)} failed")
    return read_video(out)

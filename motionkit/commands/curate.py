"""``motionkit curate INPUT... --out MANIFEST``: split videos into shots, filter them, write a manifest
(``.jsonl``: kept clips; ``.parquet``: every shot with its verdicts), locally or on Ray."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "curate",
        help="split videos into clips at scene cuts, drop static/fast/duplicate/short ones, write a JSONL manifest",
        description=(
            "Curate training clips. Reruns resume: finished videos are skipped and kept. "
            "Run one --shard I/N per machine and join the shard manifests with 'motionkit manifest merge'"
            " (which removes near-duplicates across shards), or run on a Ray cluster with --engine ray."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="video files and/or folders (searched recursively)")
    parser.add_argument(
        "--out", required=True, metavar="MANIFEST", help="manifest to write or resume: .jsonl (kept clips) or .parquet (all rows)"
    )
    parser.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local: processes on this machine (default); ray: a Ray Data pipeline (pip install 'motionkit[ray]')",
    )
    parser.add_argument(
        "--ray-address", default=None, metavar="ADDR",
        help="with --engine ray: attach to this Ray cluster (auto, ray://head:10001); default: start Ray on this machine",
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="processes (local) or CPUs for a Ray started here (default: every core this process may use)",
    )
    parser.add_argument("--shard", default=None, metavar="I/N", help="only this machine's share of the videos, e.g. 0/4")
    parser.add_argument("--min-duration", type=float, default=1.0, metavar="S", help="drop clips shorter than S seconds (1.0)")
    parser.add_argument("--min-size", type=int, default=0, metavar="PX", help="drop videos whose shorter side is below PX (0)")
    parser.add_argument(
        "--min-motion",
        type=float,
        default=0.5,
        metavar="X",
        help="drop static clips: Farneback px at a 128 px short side per 0.5 s below X (0.5; -1 disables)",
    )
    parser.add_argument("--max-motion", type=float, default=None, metavar="X", help="drop too fast or shaky clips above X")
    parser.add_argument(
        "--dedup-threshold",
        type=int,
        default=4,
        metavar="D",
        help="drop clips whose middle-frame hash is within D of 64 bits of a kept clip (4; -1 disables)",
    )
    parser.add_argument(
        "--captions", metavar="CSV|DIR",
        help="captions: a WebVid, OpenVid-1M or Panda-70M CSV, or a video2dataset output folder (matched on file stem)",
    )
    parser.add_argument("--scene-threshold", type=float, default=27.0, metavar="T", help="ContentDetector threshold (27)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from motionkit.data.curate import CurateOptions, curate, default_workers, parse_shard

    options = CurateOptions(
        min_duration=args.min_duration,
        min_size=args.min_size,
        min_motion=None if args.min_motion is not None and args.min_motion < 0 else args.min_motion,
        max_motion=args.max_motion,
        dedup_threshold=None if args.dedup_threshold < 0 else args.dedup_threshold,
        scene_threshold=args.scene_threshold,
    )
    report = curate(
        args.inputs,
        args.out,
        options=options,
        workers=args.workers if args.workers is not None else default_workers(),
        shard=parse_shard(args.shard) if args.shard else None,
        captions_csv=args.captions,
        progress=not args.no_progress,
        engine=args.engine,
        ray_address=args.ray_address,
    )
    print(report.summary())
    print(f"manifest: {args.out}")
    return 0

"""``motionkit manifest merge|filter``: join shard manifests (near-duplicates removed across shards) and
re-run filters on a parquet manifest, without decoding any video."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("manifest", help="merge shard manifests, re-run filters on a parquet manifest")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    merge = actions.add_parser(
        "merge",
        help="join manifests (JSONL or parquet) and remove near-duplicates across them",
        description="Join the manifests of 'motionkit curate --shard I/N' runs. From parquet manifests the result"
        " equals one unsharded run.",
    )
    merge.add_argument("inputs", nargs="+", metavar="MANIFEST", help="manifests to join (.jsonl or .parquet)")
    merge.add_argument("--out", required=True, metavar="MANIFEST", help="merged manifest (.parquet or .jsonl)")
    merge.add_argument("--dedup-threshold", type=int, default=4, metavar="D", help="Hamming distance (4; -1 disables)")
    merge.set_defaults(func=run_merge)

    refilter = actions.add_parser(
        "filter", help="apply new thresholds to the measurements of a parquet manifest",
    )
    refilter.add_argument("manifest", metavar="MANIFEST.parquet")
    refilter.add_argument("--out", required=True, metavar="MANIFEST", help="filtered manifest (.parquet or .jsonl)")
    refilter.add_argument("--min-duration", type=float, default=1.0, metavar="S")
    refilter.add_argument("--min-size", type=int, default=0, metavar="PX")
    refilter.add_argument("--min-motion", type=float, default=0.5, metavar="X", help="-1 disables")
    refilter.add_argument("--max-motion", type=float, default=None, metavar="X")
    refilter.add_argument("--dedup-threshold", type=int, default=4, metavar="D", help="-1 disables")
    refilter.set_defaults(func=run_filter)


def run_merge(args: argparse.Namespace) -> int:
    from motionkit.data.refilter import merge_manifests

    report = merge_manifests(args.inputs, args.out, dedup_threshold=None if args.dedup_threshold < 0 else args.dedup_threshold)
    print(report.summary())
    print(f"manifest: {args.out}")
    return 0


def run_filter(args: argparse.Namespace) -> int:
    from motionkit.data.analysis import CurateOptions
    from motionkit.data.refilter import filter_manifest

    options = CurateOptions(
        min_duration=args.min_duration,
        min_size=args.min_size,
        min_motion=None if args.min_motion < 0 else args.min_motion,
        max_motion=args.max_motion,
        dedup_threshold=None if args.dedup_threshold < 0 else args.dedup_threshold,
    )
    report = filter_manifest(args.manifest, args.out, options)
    print(report.summary())
    print(f"manifest: {args.out}")
    return 0

"""``motionkit shard MANIFEST --out DIR``: write the kept clips of a manifest as WebDataset tar shards
(clip, row JSON, caption) with an index, or as latent shards that training reads without decoding."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "shard",
        help="write a manifest's clips as WebDataset tar shards (or VAE latent shards) for streaming training",
        description="Shards are plain tars in WebDataset's layout plus an index; train on them with data.shards.",
    )
    parser.add_argument("manifest", metavar="MANIFEST", help="manifest (.jsonl or .parquet) from motionkit curate")
    parser.add_argument("--out", required=True, metavar="DIR", help="new folder for the shards")
    parser.add_argument("--clips-per-shard", type=int, default=1000, metavar="N", help="samples per tar (1000)")
    parser.add_argument("--crf", type=int, default=18, metavar="Q", help="H.264 quality of re-encoded cut clips (18)")
    latents = parser.add_argument_group("latent shards (VAE latents instead of video)")
    latents.add_argument("--latents", action="store_true", help="store VAE latents: training skips decoding and the VAE")
    latents.add_argument("--base", metavar="MODEL", help="base model whose VAE encodes the clips (folder or single file)")
    latents.add_argument("--n-frames", type=int, default=16, metavar="F", help="frames per clip (16; match data.n_frames)")
    latents.add_argument("--stride", type=int, default=4, metavar="S", help="frame stride (4; match data.stride)")
    latents.add_argument("--size", type=int, default=256, metavar="PX", help="square crop size (256; match data.size)")
    latents.add_argument("--device", default="cpu", help="where the VAE runs (cpu, cuda)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from motionkit.data.shards import write_shards
    from motionkit.errors import MotionkitError

    encode = spec = None
    if args.latents:
        if not args.base:
            raise MotionkitError("--latents needs --base: the model whose VAE encodes the clips")
        import torch

        from motionkit.train.base import load_base

        base = load_base(args.base)
        base.vae.to(args.device).eval()

        def encode(pixels: torch.Tensor) -> torch.Tensor:
            # The posterior mean, scaled: what the trainer's latent cache holds.
            return base.encode_frames(pixels[None].to(args.device), None)[0]

        spec = {"n_frames": args.n_frames, "stride": args.stride, "size": args.size}
    elif args.base:
        raise MotionkitError("--base is only used with --latents")
    index = write_shards(
        args.manifest, args.out, clips_per_shard=args.clips_per_shard, encode=encode, latents=spec,
        crf=args.crf, progress=not args.no_progress,
    )
    total = sum(index.sample_counts)
    print(f"{total} clip(s) in {len(index.shards)} {index.kind} shard(s): {args.out}")
    return 0

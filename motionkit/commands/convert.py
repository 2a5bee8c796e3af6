"""``motionkit convert SRC DST --to FORMAT``: rewrite a motion adapter in another format, offline."""

from __future__ import annotations

import argparse
import warnings

import torch

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a motion adapter between AnimateDiff, diffusers and motionkit formats",
        description="Read any supported motion adapter (AnimateDiff .ckpt/.safetensors, diffusers folder, "
        "motionkit folder or file) and write it in another format.",
    )
    parser.add_argument("src", help="adapter file or folder to read")
    parser.add_argument("dst", help="where to write (a folder, or a .safetensors file)")
    parser.add_argument("--to", dest="to", choices=("motionkit", "diffusers", "animatediff"), default="motionkit")
    parser.add_argument("--temporal-norm", choices=("per_frame", "across_frames"), help="override the GroupNorm mode")
    parser.add_argument("--heads", type=int, help="attention heads (weights cannot tell; AnimateDiff uses 8)")
    parser.add_argument("--norm-groups", type=int, help="GroupNorm groups (weights cannot tell; AnimateDiff uses 32)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), help="cast the weights before writing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from motionkit.formats import load_adapter, save_adapter

    overrides = {}
    if args.temporal_norm:
        overrides["temporal_norm"] = args.temporal_norm
    if args.heads:
        overrides["num_attention_heads"] = args.heads
    if args.norm_groups:
        overrides["norm_num_groups"] = args.norm_groups
    adapter = load_adapter(args.src, torch_dtype=DTYPES[args.dtype] if args.dtype else None, **overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_adapter(adapter, args.dst, format=args.to)
    for w in caught:
        print(f"motionkit: warning: {w.message}")
    params = sum(p.numel() for p in adapter.parameters())
    print(f"wrote {args.dst} ({args.to}, {params:,} parameters, {str(adapter.dtype).replace('torch.', '')})")
    return 0

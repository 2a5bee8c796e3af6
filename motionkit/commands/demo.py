"""``motionkit demo``: the whole idea, offline, on CPU, in seconds.

Builds a tiny SD-shaped UNet, injects a fresh motion adapter and a trained-looking (random) one,
runs a few frames through each and reports what happened: identity at injection, motion once the
temporal layers carry weights, and an exact eject.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run motionkit end to end on a tiny built-in model (offline, CPU)")
    parser.add_argument("--out", type=Path, default=Path("motionkit-out/demo"), help="folder for the outputs")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--preset", default="motionkit-sd15", help="adapter preset for the demo adapter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--attention-backend", default="auto", choices=("auto", "sdpa", "math", "xformers", "triton"),
        help="temporal attention implementation (default auto: Triton on CUDA where it fits, else SDPA)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from motionkit import MotionAdapter, inject
    from motionkit.errors import MotionkitError
    from motionkit.tiny import randomize_, tiny_unet, unet_inputs

    if args.frames < 2:
        raise MotionkitError(f"--frames must be at least 2 to show motion, got {args.frames}")
    start = time.perf_counter()
    unet = tiny_unet("tiny-sd", seed=args.seed)
    inputs = unet_inputs(unet, frames=args.frames, seed=args.seed)
    b, c, f, h, w = inputs["sample"].shape
    with torch.no_grad():
        per_frame = unet(
            inputs["sample"].transpose(1, 2).reshape(b * f, c, h, w),
            inputs["timestep"].repeat_interleave(f),
            inputs["encoder_hidden_states"].repeat_interleave(f, 0),
        ).sample.reshape(b, f, c, h, w).transpose(1, 2)

        adapter = MotionAdapter.from_unet(unet, preset=args.preset)
        adapter.set_attention_backend(args.attention_backend)
        motion = inject(unet, adapter)
        fresh = motion(**inputs).sample
        randomize_(adapter, seed=args.seed)
        moved = motion(**inputs).sample
        motion.eject()

    print(f"base UNet: tiny SD layout, {sum(p.numel() for p in unet.parameters()):,} parameters (frozen)")
    info = adapter.describe()
    print(f"adapter: preset {args.preset}, {info['layout']}, {info['parameters']:,} parameters")
    print(f"input: {b} video x {f} frames x {h}x{w} latents")
    print(f"fresh adapter vs image model frame by frame: max |diff| = {(fresh - per_frame).abs().max().item():.3g} (identity)")
    print(f"adapter with weights: max |diff| = {(moved - per_frame).abs().max().item():.3g} (temporal layers now mix frames)")
    cross_frame = _cross_frame_influence(unet, adapter, inputs)
    print(f"changing frame 0 moves frame {f - 1}'s output by {cross_frame:.3g} with the adapter, 0 without it")

    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "adapter"
    adapter.save_pretrained(saved)
    print(f"adapter saved to {saved} ({sum(p.stat().st_size for p in saved.iterdir()) / 1e6:.2f} MB)")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _cross_frame_influence(unet, adapter, inputs) -> float:
    import torch

    from motionkit import inject

    motion = inject(unet, adapter)
    try:
        with torch.no_grad():
            base = motion(**inputs).sample
            nudged_sample = inputs["sample"].clone()
            nudged_sample[:, :, 0] += 1.0
            nudged = motion(**{**inputs, "sample": nudged_sample}).sample
    finally:
        motion.eject()
    return (nudged[:, :, -1] - base[:, :, -1]).abs().max().item()

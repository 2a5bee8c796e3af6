"""One motion module, forward and forward+backward: motionkit against diffusers' AnimateDiffTransformer3D.

Same weights, same input, interleaved in one run; ratios below 1.0 mean motionkit is faster.
Shapes follow SD1.5 UNet levels for a given resolution (latent = size / 8; channels 320/640/1280).
On CUDA, motionkit runs once per backend (sdpa, triton) so the kernel's share is visible.

    python benchmarks/bench_motion_module.py                     # CPU: 256 px, 16 frames, no guidance batch
    python benchmarks/bench_motion_module.py --device cuda --dtype fp16 --size 512 --batch 2
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

from common import print_table, time_once, write_rows

from motionkit.formats.keys import motionkit_to_diffusers_key
from motionkit.modules import TemporalTransformer

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LEVELS = ((320, 1), (640, 2), (1280, 4))  # channels, downsampling factor of the latent


def twins(channels: int, dtype: torch.dtype, device: str) -> tuple[TemporalTransformer, AnimateDiffTransformer3D]:
    ours = TemporalTransformer(channels, heads=8, temporal_norm="across_frames")
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.02)
    theirs = AnimateDiffTransformer3D(
        num_attention_heads=8,
        attention_head_dim=channels // 8,
        in_channels=channels,
        norm_num_groups=32,
        double_self_attention=True,
        positional_embeddings="sinusoidal",
        num_positional_embeddings=32,
    )
    theirs.load_state_dict({motionkit_to_diffusers_key(k): v for k, v in ours.state_dict().items()}, strict=False)
    return ours.to(device, dtype), theirs.to(device, dtype)


def timed(fn, device: str, repeats: int) -> float:
    fn()  # warm-up
    return statistics.median(time_once(fn, device) for _ in range(repeats))


def bench_level(channels: int, latent: int, args: argparse.Namespace) -> list[dict]:
    dtype, device, frames = DTYPES[args.dtype], args.device, args.frames
    ours, theirs = twins(channels, dtype, device)
    x = torch.randn(args.batch * frames, channels, latent, latent, device=device, dtype=dtype)
    backends = getattr(args, "backends", None) or (["sdpa", "triton"] if device == "cuda" else ["sdpa"])
    rows = []
    for mode in ("forward", "forward+backward"):
        train = mode != "forward"
        xin = x.clone().requires_grad_(train)

        def run_theirs():
            with torch.set_grad_enabled(train):
                out = theirs(xin, num_frames=frames)
                if train:
                    out.float().square().mean().backward()

        t_theirs = timed(run_theirs, device, args.repeats)
        for backend in backends:
            for module in ours.modules():
                if hasattr(module, "set_backend"):
                    module.set_backend(backend)

            def run_ours():
                with torch.set_grad_enabled(train):
                    out = ours(xin, frames)
                    if train:
                        out.float().square().mean().backward()

            t_ours = timed(run_ours, device, args.repeats)
            rows.append(
                {
                    "channels": channels,
                    "latent": latent,
                    "mode": mode,
                    "backend": backend,
                    "motionkit_ms": round(t_ours * 1e3, 2),
                    "diffusers_ms": round(t_theirs * 1e3, 2),
                    "ratio": round(t_ours / t_theirs, 3),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image size in pixels (latent = size / 8)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1, help="videos per batch (2 = classifier-free guidance)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2], help="UNet levels to run (0 = 320 ch)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    for level in args.levels:
        channels, factor = LEVELS[level]
        rows += bench_level(channels, args.size // 8 // factor, args)
    columns = [("channels", "ch"), ("latent", "latent"), ("mode", "mode"), ("backend", "backend"),
               ("motionkit_ms", "motionkit ms"), ("diffusers_ms", "diffusers ms"), ("ratio", "ratio")]
    print_table(rows, columns)
    write_rows(rows, args.out)
    return rows


if __name__ == "__main__":
    main()

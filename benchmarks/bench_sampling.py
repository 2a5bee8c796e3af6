"""Sampling speed and peak memory: motionkit's MotionPipeline vs diffusers' AnimateDiffPipeline.

Both pipelines get identical components (the same base weights and the same adapter weights) and
run the same text-to-video call; one warm-up run each, then ``--repeats`` timed runs, interleaved (median time, max peak). Prints seconds per
denoising step and peak memory (CUDA: max_memory_allocated; CPU: peak growth of the process's
resident set, sampled every millisecond) and their ratios.

    python benchmarks/bench_sampling.py                      # tiny models, CPU, well under a minute
    python benchmarks/bench_sampling.py --unet medium-sd --device cuda --frames 16 --size 256 --steps 10
    python benchmarks/bench_sampling.py --unet sd15 --device cuda --dtype fp16 --frames 16 --size 512 --steps 4
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import threading
import time
from typing import Any, Callable

import torch
from diffusers import AnimateDiffPipeline

from common import CLOCK_HELP, CLOCKS

from motionkit import MotionAdapter
from motionkit.formats.diffusers_format import to_diffusers_adapter
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.pipeline.schedulers import make_scheduler
from motionkit.tiny import randomize_, tiny_pipeline_components


def build(unet_name: str, device: str, dtype: torch.dtype) -> tuple[MotionPipeline, AnimateDiffPipeline]:
    ours_parts = tiny_pipeline_components(unet=unet_name)
    adapter = randomize_(
        MotionAdapter.from_unet(ours_parts["unet"], preset="animatediff-v2", temporal_norm="across_frames")
    )
    reference_adapter = to_diffusers_adapter(adapter)
    theirs_parts = tiny_pipeline_components(unet=unet_name)
    ours = MotionPipeline(**ours_parts, adapter=adapter)
    theirs = AnimateDiffPipeline(
        vae=theirs_parts["vae"], text_encoder=theirs_parts["text_encoder"], tokenizer=theirs_parts["tokenizer"],
        unet=theirs_parts["unet"], motion_adapter=reference_adapter,
        scheduler=make_scheduler("ddim", theirs_parts["scheduler"].config),
    )
    ours.scheduler = make_scheduler("ddim", ours_parts["scheduler"].config)
    for pipe in (ours, theirs):
        pipe.to(device) if dtype == torch.float32 else pipe.to(device, dtype)
        pipe.set_progress_bar_config(disable=True)
    return ours, theirs


def set_savings(pipe: MotionPipeline, on: bool) -> None:
    """motionkit's exact-path savings on or off: fused temporal projections and the CPU chunks."""
    pipe.motion_unet.chunk_feed_forwards = on
    for module in pipe.motion_unet.adapter.modules():
        if hasattr(module, "fuse_projections"):
            module.fuse_projections = on
        if hasattr(module, "chunk_sequences"):
            module.chunk_sequences = on


def measure(run: Callable[[], Any], device: str, clock: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """(seconds, peak MiB) of one call, after the caller's warm-up."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        run()
        torch.cuda.synchronize()
        return time.perf_counter() - start, (torch.cuda.max_memory_allocated() - base) / 2**20
    # ru_maxrss only ever grows (the warm-up already set it), so sample the current RSS instead.
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    base, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = clock()
    run()
    seconds = clock() - start
    done.set()
    sampler.join()
    return seconds, max(peak[0] - base, 0) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--unet", default="tiny-sd", choices=["tiny-sd", "medium-sd", "sd15"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per pipeline, interleaved; median reported")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="height and width in pixels (multiple of 8)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS), help=CLOCK_HELP)
    parser.add_argument("--savings", default="on", choices=["on", "off"], help="motionkit's exact-path savings")
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    ours, theirs = build(args.unet, args.device, dtype)
    set_savings(ours, args.savings == "on")
    call = dict(
        prompt="a corgi running on the beach", negative_prompt="blurry", num_frames=args.frames,
        height=args.size, width=args.size, num_inference_steps=args.steps, guidance_scale=args.guidance,
        output_type="latent",  # sampling only: both decode the same way
    )

    def runner(pipe) -> Callable[[], Any]:
        return lambda: pipe(**call, generator=torch.Generator("cpu").manual_seed(0))

    pipes = {"motionkit": ours, "diffusers": theirs}
    for pipe in pipes.values():
        runner(pipe)()  # warm-up: allocator, kernels, lazy inits
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pipes}
    for _ in range(args.repeats):  # interleaved, so load on a shared machine hits both alike
        for name, pipe in pipes.items():
            samples[name].append(measure(runner(pipe), args.device, CLOCKS[args.clock]))
    results = {
        name: (statistics.median(t for t, _ in runs) / args.steps, max(m for _, m in runs))
        for name, runs in samples.items()
    }

    print(
        f"device={args.device} dtype={args.dtype} unet={args.unet} frames={args.frames} size={args.size} "
        f"steps={args.steps} guidance={args.guidance} clock={args.clock} savings={args.savings}"
    )
    for name, (per_step, mib) in results.items():
        print(f"{name:>10}: {per_step * 1000:9.1f} ms/step   peak {mib:9.1f} MiB")
    (ours_t, ours_m), (ref_t, ref_m) = results["motionkit"], results["diffusers"]
    # Below ~1 MiB the allocator serves everything from memory it already holds: no ratio to speak of.
    memory = f"{ours_m / ref_m:9.2f} x memory" if min(ours_m, ref_m) >= 1 else "   memory below resolution"
    print(f"{'ratio':>10}: {ours_t / ref_t:9.2f} x time   {memory} (motionkit / diffusers)")


if __name__ == "__main__":
    main()

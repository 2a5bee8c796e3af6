"""Peak memory of each memory option: motionkit's MotionPipeline vs diffusers' AnimateDiffPipeline.

Every (pipeline, option) pair runs in a fresh subprocess, so no run inherits another's allocator state.
Both pipelines get identical weights and the same text-to-video call, decoded to pixels (the VAE options
act on the decode). Measured:

- CPU: the child's peak resident set (``ru_maxrss``: weights, activations and decoded frames, what the
  machine must hold) and the peak RSS growth during the call, sampled every millisecond;
- CUDA: ``torch.cuda.max_memory_allocated`` over the whole child (load and call) and during the call.

``--offload model|sequential`` rows need CUDA (offload moves models between main memory and the GPU) and
are reported as such on a CPU-only machine. The claim "SD 1.5, 16 frames at 512x512 under 8 GB" is a GPU
claim: run ``--unet sd15 --frames 16 --size 512 --dtype float16 --device cuda`` on a GPU to check it.

    python benchmarks/bench_memory.py                                   # medium-sd, 8 x 128 px, CPU, ~3 min
    python benchmarks/bench_memory.py --unet sd15 --frames 16 --size 512 --dtype float16 --device cuda
    python benchmarks/bench_memory.py --unet sd15 --vae sd --frames 16 --size 512 --dtype float16 --device cuda \
        --options offload_model                                         # with SD's full-size VAE
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

OPTIONS = ("none", "vae_slicing", "vae_tiling", "decode_chunk_1", "offload_model", "offload_sequential")
PIPELINES = ("motionkit", "diffusers")


def build(pipeline: str, unet: str, device: str, dtype: torch.dtype, vae: str = "tiny") -> Any:
    """``vae="sd"`` swaps the tiny VAE for one in Stable Diffusion's layout (random weights)."""
    from diffusers import AnimateDiffPipeline

    from common import sd_vae

    from motionkit import MotionAdapter
    from motionkit.formats.diffusers_format import to_diffusers_adapter
    from motionkit.pipeline.motion_pipeline import MotionPipeline
    from motionkit.pipeline.schedulers import make_scheduler
    from motionkit.tiny import randomize_, tiny_pipeline_components

    parts = tiny_pipeline_components(unet=unet)
    if vae == "sd":
        parts["vae"] = sd_vae()
    adapter = randomize_(MotionAdapter.from_unet(parts["unet"], preset="animatediff-v2", temporal_norm="across_frames"))
    scheduler = make_scheduler("ddim", parts["scheduler"].config)
    if pipeline == "motionkit":
        pipe = MotionPipeline(**{**parts, "scheduler": scheduler}, adapter=adapter)
    else:
        pipe = AnimateDiffPipeline(
            vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["unet"],
            motion_adapter=to_diffusers_adapter(adapter), scheduler=scheduler,
        )
    pipe.set_progress_bar_config(disable=True)
    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    return pipe


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement: build, switch the option on, run once; returns MiB figures."""
    torch.set_num_threads(max(1, args.threads))
    dtype = getattr(torch, args.dtype)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    pipe = build(args.pipeline, args.unet, "cpu" if args.option.startswith("offload") else args.device, dtype,
                 getattr(args, "vae", "tiny"))
    chunk = getattr(args, "decode_chunk", 16)
    if args.option == "vae_slicing":
        pipe.vae.enable_slicing()
    elif args.option == "vae_tiling":
        pipe.vae.enable_tiling()
    elif args.option == "decode_chunk_1":
        chunk = 1
    elif args.option == "offload_model":
        pipe.enable_model_cpu_offload(device=args.device)
    elif args.option == "offload_sequential":
        pipe.enable_sequential_cpu_offload(device=args.device)
    if not args.option.startswith("offload"):
        pipe.to(args.device)
    call = dict(
        prompt="a corgi running on the beach", negative_prompt="blurry", num_frames=args.frames, height=args.size,
        width=args.size, num_inference_steps=args.steps, guidance_scale=7.5, output_type="np", decode_chunk_size=chunk,
    )
    base, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    if cuda:
        torch.cuda.synchronize()
        gpu_base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    sampler.start()
    start = time.perf_counter()
    pipe(**call, generator=torch.Generator("cpu").manual_seed(0))
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    result = {"seconds": seconds, "process_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "call_peak_mib": max(peak[0] - base, 0) / 2**20}
    if cuda:
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu_call_peak_mib"] = (torch.cuda.max_memory_allocated() - gpu_base) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--unet", default="medium-sd", choices=["tiny-sd", "medium-sd", "sd15"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vae", choices=["tiny", "sd"], default="tiny", help="sd: Stable Diffusion's VAE layout")
    parser.add_argument("--decode-chunk", type=int, default=16, help="frames decoded at once (option decode_chunk_1: 1)")
    parser.add_argument("--options", nargs="*", default=list(OPTIONS), choices=OPTIONS)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--child", nargs=2, metavar=("PIPELINE", "OPTION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.pipeline, args.option = args.child
        print(json.dumps(child(args)))
        return

    cuda = args.device.startswith("cuda")
    print(f"device={args.device} dtype={args.dtype} unet={args.unet} frames={args.frames} size={args.size} steps={args.steps}")
    key = "gpu_peak_mib" if cuda else "process_peak_mib"
    call_key = "gpu_call_peak_mib" if cuda else "call_peak_mib"
    rows = []
    for option in args.options:
        if option.startswith("offload") and not cuda:
            rows.append({"option": option, "note": "needs CUDA: offload moves models between main memory and a GPU"})
            print(f"{option:>20}: needs CUDA (offload moves models between main memory and a GPU)")
            continue
        row: dict[str, Any] = {"option": option}
        for pipeline in PIPELINES:  # interleaved per option, so machine load hits both alike
            command = [sys.executable, __file__, "--child", pipeline, option, "--device", args.device, "--dtype",
                       args.dtype, "--unet", args.unet, "--frames", str(args.frames), "--size", str(args.size),
                       "--steps", str(args.steps), "--threads", str(args.threads), "--vae", args.vae,
                       "--decode-chunk", str(args.decode_chunk)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{pipeline} / {option} failed: {done.stderr.strip().splitlines()[-1]}")
            row[pipeline] = json.loads(done.stdout.strip().splitlines()[-1])
        ours, theirs = row["motionkit"], row["diffusers"]
        row["ratio_peak"] = ours[key] / theirs[key]
        row["ratio_call"] = ours[call_key] / theirs[call_key] if theirs[call_key] >= 1 else None
        rows.append(row)
        call_ratio = f"{row['ratio_call']:.2f}" if row["ratio_call"] is not None else "n/a"
        print(
            f"{option:>20}: peak {ours[key]:8.1f} / {theirs[key]:8.1f} MiB = {row['ratio_peak']:.2f}   "
            f"call {ours[call_key]:8.1f} / {theirs[call_key]:8.1f} MiB = {call_ratio}   "
            f"time {ours['seconds']:6.1f} / {theirs['seconds']:6.1f} s  (motionkit / diffusers)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

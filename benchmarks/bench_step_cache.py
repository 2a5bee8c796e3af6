"""Step caching (DeepCache) against exact sampling: speed, and how far the video moves from the exact one.

Two cases, every configuration of a case timed interleaved with the exact run (``--repeats`` rounds,
median seconds; sampling only: text encoding and denoising, ``output_type="latent"``, decoding is the same
for all and runs untimed afterwards):

- ``tiny-family``: the shipped tiny family (trained weights), image-to-video from its conditioning frame,
  8 frames at 64 px, 25 DDIM steps, guidance 4.0. Frame metrics mean something here.
- ``medium``: ``bench_sampling``'s medium-sd UNet with a random animatediff-v2 adapter, text-to-video,
  ``--medium-frames`` (16) frames at 128 px, 25 DDIM steps, guidance 7.5. Random weights decode to textures,
  not pictures, so the latent PSNR (peak-to-peak of the exact latents as the range) is given beside the frames'.

Time is the process's CPU time (torch on ``--threads`` threads, 1 by default), so other jobs on a shared
machine do not skew the ratios; wall seconds are recorded beside it.
Per configuration: speed-up (exact CPU seconds / cached CPU seconds), PSNR of the frames against the exact
run's, latent PSNR, warping error and flicker (``common.video_metrics``) and the warping error's change
against exact. Target: speed-up >= 1.8 at frame PSNR >= 30 dB with warping error rising <= 10%.

    python benchmarks/bench_step_cache.py                        # both cases, CPU
    python benchmarks/bench_step_cache.py --cases tiny-family --sheet motionkit-out/step_cache_sheet.png
    python benchmarks/bench_step_cache.py --cases medium --medium-frames 8 --repeats 2 --configs exact N=2 N=3 N=4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, time_once, tiny_family_pipeline, video_metrics, write_rows  # noqa: E402

from motionkit.metrics import psnr  # noqa: E402
from motionkit.pipeline.schedulers import make_scheduler  # noqa: E402

# (label, cache_interval, cache_branch, cache_schedule); the first is exact sampling.
CONFIGS: list[tuple[str, int | None, int, str]] = [
    ("exact", None, 0, "uniform"),
    ("N=2", 2, 0, "uniform"),
    ("N=3", 3, 0, "uniform"),
    ("N=4", 4, 0, "uniform"),
    ("N=5", 5, 0, "uniform"),
    ("N=3 quadratic", 3, 0, "quadratic"),
    ("N=4 quadratic", 4, 0, "quadratic"),
    ("N=3 branch 1", 3, 1, "uniform"),
    ("N=3 branch 3", 3, 3, "uniform"),
    ("N=5 branch 3", 5, 3, "uniform"),
]
TARGET_SPEEDUP, TARGET_PSNR, TARGET_WARP_RISE = 1.8, 30.0, 0.10


@dataclass
class Case:
    name: str
    pipe: Any
    call: dict[str, Any]
    seed: int


def tiny_family_case(args: argparse.Namespace) -> Case:
    pipe, family = tiny_family_pipeline(args.models_dir)
    pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    call = dict(prompt=family.prompt, image=str(family.conditioning), num_frames=8, height=64, width=64,
                num_inference_steps=25, guidance_scale=4.0)
    return Case("tiny-family", pipe, call, args.seed)


def medium_case(args: argparse.Namespace) -> Case:
    from bench_sampling import build

    pipe, _ = build("medium-sd", "cpu", torch.float32)
    call = dict(prompt="a corgi running on the beach", negative_prompt="blurry", num_frames=args.medium_frames, height=128, width=128,
                num_inference_steps=25, guidance_scale=7.5)
    return Case("medium", pipe, call, args.seed)


CASES = {"tiny-family": tiny_family_case, "medium": medium_case}


@torch.no_grad()
def _frames(pipe: Any, latents: torch.Tensor) -> np.ndarray:
    pixels = pipe.decode_latents(latents)
    return pipe.video_processor.postprocess_video(video=pixels, output_type="np")[0]


def _latent_psnr(latents: torch.Tensor, exact: torch.Tensor) -> float | None:
    error = float(((latents - exact) ** 2).mean())
    peak = float(exact.max() - exact.min())
    return None if error == 0 else round(float(10 * np.log10(peak**2 / error)), 2)


def run_case(case: Case, repeats: int, configs: list[tuple[str, int | None, int, str]]) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    outputs: dict[str, torch.Tensor] = {}

    def sample(label: str, interval: int | None, branch: int, schedule: str, **overrides: Any) -> None:
        outputs[label] = case.pipe(
            **{**case.call, **overrides}, cache_interval=interval, cache_branch=branch, cache_schedule=schedule,
            output_type="latent", generator=torch.Generator().manual_seed(case.seed),
        ).frames

    sample(*CONFIGS[0], num_inference_steps=2)  # warm-up: allocator, lazy inits
    seconds: dict[str, list[float]] = {label: [] for label, *_ in configs}
    wall: dict[str, list[float]] = {label: [] for label, *_ in configs}
    for _ in range(repeats):  # interleaved, so load on a shared machine hits every configuration alike
        for config in configs:
            start = time.process_time()
            wall[config[0]].append(time_once(lambda: sample(*config), "cpu"))
            seconds[config[0]].append(time.process_time() - start)
    frames = {label: _frames(case.pipe, latents) for label, latents in outputs.items()}
    exact_time = statistics.median(seconds["exact"])
    exact_metrics = video_metrics(frames["exact"])
    rows = []
    for label, interval, branch, schedule in configs:
        metrics = video_metrics(frames[label])
        video = (np.clip(frames[label], 0, 1) * 255).round()
        reference = (np.clip(frames["exact"], 0, 1) * 255).round()
        row = {
            "case": case.name,
            "config": label,
            "seconds": round(statistics.median(seconds[label]), 3),
            "wall_seconds": round(statistics.median(wall[label]), 3),
            "speedup": round(exact_time / statistics.median(seconds[label]), 2),
            "psnr_vs_exact": round(psnr(video, reference), 2) if label != "exact" else None,
            "latent_psnr": _latent_psnr(outputs[label], outputs["exact"]),
            "warping_error": metrics["warping_error"],
            "warp_rise": round(metrics["warping_error"] / exact_metrics["warping_error"] - 1, 3),
            "flicker": metrics["flicker"],
        }
        row["meets_target"] = label != "exact" and (
            row["speedup"] >= TARGET_SPEEDUP and row["psnr_vs_exact"] >= TARGET_PSNR and row["warp_rise"] <= TARGET_WARP_RISE
        )
        rows.append(row)
        print(row, flush=True)
    return rows, frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--repeats", type=int, default=3, help="timed rounds, interleaved; median reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models-dir", help="a tiny-family models folder (default: the shipped one)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--medium-frames", type=int, default=16)
    p.add_argument("--configs", nargs="+", choices=[label for label, *_ in CONFIGS], help="configurations to run (exact always runs)")
    p.add_argument("--sheet", type=Path, help="write a contact sheet of the tiny family's exact and cached frames here (.png)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "step_cache.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    configs = [c for c in CONFIGS if c[0] == "exact" or args.configs is None or c[0] in args.configs]
    rows = []
    for name in args.cases:
        case_rows, frames = run_case(CASES[name](args), args.repeats, configs)
        rows += case_rows
        write_rows(rows, args.out)  # each finished case is kept, should a later one be stopped
        if args.sheet is not None and name == "tiny-family":
            from motionkit.contact_sheet import write_contact_sheet

            args.sheet.parent.mkdir(parents=True, exist_ok=True)
            shown = [label for label in ("exact", "N=2", "N=3", "N=4", "N=5") if label in frames]
            print(f"wrote {write_contact_sheet(args.sheet, [(label, frames[label]) for label in shown])}")
    print_table(rows, [("case", "case"), ("config", "config"), ("seconds", "CPU s"), ("wall_seconds", "wall s"), ("speedup", "speed-up"),
                       ("psnr_vs_exact", "PSNR vs exact"), ("latent_psnr", "latent PSNR"), ("warping_error", "warp err"),
                       ("warp_rise", "warp rise"), ("flicker", "flicker"), ("meets_target", "target")])


if __name__ == "__main__":
    main()

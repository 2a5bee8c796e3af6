"""Few-step presets against 25-step DDIM on the tiny family (CPU): time and video metrics.

The tiny family's adapter is not distilled, so this measures the mechanics and the speed of a preset's
schedule, not AnimateLCM's or Lightning's quality (that needs their checkpoints).

    python benchmarks/bench_few_step.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, time_once, tiny_family_pipeline, video_metrics, write_rows  # noqa: E402

from motionkit.pipeline.few_step import get_preset  # noqa: E402
from motionkit.pipeline.schedulers import make_scheduler  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models-dir")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "few_step.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    pipe, family = tiny_family_pipeline(args.models_dir)
    base_config = pipe.scheduler.config
    runs = [("ddim-25", make_scheduler("ddim", base_config), 25, 4.0)]
    for name in ("animatelcm", "lightning-8", "lightning-4", "lightning-2", "lightning-1"):
        preset = get_preset(name)
        runs.append((name, preset.make_scheduler(base_config), preset.steps, preset.guidance))
    rows = []
    for name, scheduler, steps, guidance in runs:
        pipe.scheduler = scheduler
        out = {}

        def sample():
            out["video"] = pipe(
                prompt=family.prompt, image=str(family.conditioning), num_frames=args.frames, num_inference_steps=steps,
                guidance_scale=guidance, output_type="np", generator=torch.Generator().manual_seed(args.seed),
            ).frames[0]

        seconds = time_once(sample, "cpu")
        rows.append({"run": name, "steps": steps, "guidance": guidance, "seconds": round(seconds, 2), **video_metrics(out["video"])})
        print(rows[-1], flush=True)
    print_table(rows, [("run", "run"), ("steps", "steps"), ("guidance", "guidance"), ("seconds", "s"), ("warping_error", "warp err"),
                       ("flicker", "flicker"), ("motion_px", "motion px"), ("psnr_vs_f0", "PSNR vs f0")])
    write_rows(rows, args.out)


if __name__ == "__main__":
    main()

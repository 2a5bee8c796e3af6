"""What ``motion_strength`` does on the tiny family (CPU): motion score (px per frame), steadiness and drift
per value, image-to-video from the family's conditioning frame, the same seeds for every value.

    python benchmarks/bench_motion_strength.py                 # 16 frames, 25 steps, 3 seeds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, tiny_family_pipeline, video_metrics, write_rows  # noqa: E402

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--models-dir")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "motion_strength.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    pipe, family = tiny_family_pipeline(args.models_dir)
    rows = []
    for strength in STRENGTHS:
        runs = []
        for seed in range(args.seeds):
            video = pipe(
                prompt=family.prompt, image=str(family.conditioning), num_frames=args.frames, num_inference_steps=args.steps,
                guidance_scale=4.0, motion_strength=strength, output_type="np", generator=torch.Generator().manual_seed(seed),
            ).frames[0]
            runs.append(video_metrics(video))
        mean = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in runs[0]}
        rows.append({"motion_strength": strength, **mean})
        print(rows[-1], flush=True)
    print_table(rows, [("motion_strength", "motion_strength"), ("motion_px", "motion px/frame"), ("warping_error", "warp err"),
                       ("flicker", "flicker"), ("psnr_vs_f0", "PSNR vs f0")])
    write_rows(rows, args.out)


if __name__ == "__main__":
    main()

"""Long videos on the tiny family (CPU): plain context windows vs FreeNoise vs FreeNoise + FreeInit.

Image-to-video from the family's conditioning frame and caption, 64 and 128 frames (the adapter's position
table is 32). Reported per run: warping error and flicker (lower = steadier), motion score (px per frame),
content drift as PSNR of frames 1..N-1 against frame 0 (all of them, and the last quarter: higher = less
drift), and wall time. ``--contact-sheet PNG`` lays one FreeNoise run out frame by frame.

    python benchmarks/bench_long_video.py                      # 64 and 128 frames, 10 steps
    python benchmarks/bench_long_video.py --frames 64 --steps 4 --contact-sheet sheet.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, time_once, tiny_family_pipeline, video_metrics, write_rows  # noqa: E402

MODES = ("windows", "freenoise", "freenoise+freeinit")


def run(pipe, family, mode: str, frames: int, steps: int, seed: int, window: int) -> tuple[dict, object]:
    pipe.disable_free_noise()
    pipe.disable_free_init()
    context = {}
    if mode == "windows":
        context = dict(context_length=window, context_overlap=window // 4)
    else:
        pipe.enable_free_noise(context_length=window, context_stride=window // 4)
        if mode.endswith("freeinit"):
            pipe.enable_free_init(num_iters=2)
    out = {}

    def sample():
        out["video"] = pipe(
            prompt=family.prompt, image=str(family.conditioning), num_frames=frames, num_inference_steps=steps,
            guidance_scale=4.0, output_type="np", generator=torch.Generator().manual_seed(seed), **context,
        ).frames[0]

    seconds = time_once(sample, "cpu")
    pipe.disable_free_noise()
    pipe.disable_free_init()
    return {"mode": mode, "frames": frames, "steps": steps, "seconds": round(seconds, 1), **video_metrics(out["video"])}, out["video"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, nargs="+", default=[64, 128])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--window", type=int, default=16, help="context / FreeNoise window (stride and overlap: a quarter)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models-dir")
    p.add_argument("--contact-sheet", type=Path, help="write the first FreeNoise run's frames here (.png)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "long_video.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    pipe, family = tiny_family_pipeline(args.models_dir)
    rows, sheet_rows = [], []
    for frames in args.frames:
        for mode in MODES:
            row, video = run(pipe, family, mode, frames, args.steps, args.seed, args.window)
            rows.append(row)
            print(row, flush=True)
            if frames == args.frames[0]:
                sheet_rows.append((f"{mode}, {frames} frames", video))
    columns = [("mode", "mode"), ("frames", "frames"), ("steps", "steps"), ("seconds", "s"), ("warping_error", "warp err"),
               ("flicker", "flicker"), ("motion_px", "motion px"), ("psnr_vs_f0", "PSNR vs f0"),
               ("psnr_last_quarter_vs_f0", "last 1/4 vs f0")]
    print_table(rows, columns)
    write_rows(rows, args.out)
    if args.contact_sheet:
        from motionkit.contact_sheet import write_contact_sheet

        print("wrote", write_contact_sheet(args.contact_sheet, sheet_rows, scale=2, gap=2))


if __name__ == "__main__":
    main()

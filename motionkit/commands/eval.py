"""``motionkit eval VIDEO``: weight-free quality and motion metrics of a video file."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

# What each metric means, in the order the table shows them.
_ROWS = (
    ("frames", "frames"),
    ("size", "width x height"),
    ("temporal_flicker", "VBench flicker score, 1 = no change between frames"),
    ("mean_abs_frame_diff", "mean |frame t+1 - frame t|, 0..255"),
    ("warping_error", "flow-warped squared error, 0 = consistent"),
    ("motion_score", "mean flow magnitude, px per frame pair"),
    ("dynamic_degree", "VBench rule: does the clip move?"),
    ("first_frame_psnr", "frame 0 vs image, dB"),
    ("first_frame_ssim", "frame 0 vs image, 1 = same"),
    ("first_frame_mse", "frame 0 vs image, 0..255^2"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="measure a video: flicker, warping error, motion, first-frame fidelity",
        description="Weight-free video metrics (OpenCV Farneback flow; proxies for the RAFT-based benchmark numbers).",
    )
    parser.add_argument("video", metavar="VIDEO", help="video file (mp4, webm, gif, webp, ...) or folder of frames")
    parser.add_argument("--image", metavar="COND", help="conditioning image: adds first-frame PSNR / SSIM / MSE")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="only measure the first N frames")
    parser.add_argument(
        "--use-fps",
        action="store_true",
        help="resample by the file's fps (2 fps for motion score as SVD, 8 fps for dynamic degree as VBench)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from motionkit.metrics import evaluate_video
    from motionkit.video_io import probe_video, read_video

    frames = read_video(args.video, max_frames=args.max_frames)
    fps = probe_video(args.video).fps if args.use_fps else None
    report = evaluate_video(frames, args.image, fps=fps)
    if args.json:
        # JSON has no infinity: PSNR of identical images becomes null.
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in report.items()}
        print(json.dumps({"video": str(args.video), **clean}, indent=2))
    else:
        print(format_report(report, title=str(args.video)))
    return 0


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def format_report(report: dict[str, Any], *, title: str = "") -> str:
    """An aligned text table of an ``evaluate_video`` report."""
    values = dict(report)
    if "width" in values and "height" in values:
        values["size"] = f"{values.pop('width')}x{values.pop('height')}"
    rows = [(name, format_value(values[name]), note) for name, note in _ROWS if name in values]
    name_w = max(len(r[0]) for r in rows)
    value_w = max(len(r[1]) for r in rows)
    lines = [title] if title else []
    lines += [f"  {name:<{name_w}}  {value:>{value_w}}  {note}" for name, value, note in rows]
    return "\n".join(lines)

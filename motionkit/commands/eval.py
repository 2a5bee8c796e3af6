"""``motionkit eval VIDEO [--image IMG] [--reference CLIP]``: weight-free metrics of a video file.

Steadiness and motion always; adherence over frames 1..N-1 (frame 0 of image-to-video is usually the image
itself, so it proves nothing): against the video's own frame 0 and the 0 -> 1 jump always, against the
conditioning image with ``--image``, frame by frame against a ground-truth clip with ``--reference``;
faithfulness of a video-to-video output to its source clip with ``--source`` (the source frames are picked
as the output's sidecar JSON records, else frame k against frame k).
An image or reference of another size is fitted to the video as the pipeline prepares images (resize to
cover, centre crop); a reference of another length is compared over the frames both have.
"""

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
    ("psnr_frame0", "frames 1..N-1 vs frame 0, mean dB"),
    ("ssim_frame0", "frames 1..N-1 vs frame 0, mean SSIM"),
    ("jump_ratio", "|f1 - f0| / median |fk - fk-1| (k >= 2), 1 = no jump"),
    ("psnr_image", "frames 1..N-1 vs image, mean dB"),
    ("ssim_image", "frames 1..N-1 vs image, mean SSIM"),
    ("delta_e_image", "frames 1..N-1 vs image, mean-colour CIE76 delta E"),
    ("hist_image", "frames 1..N-1 vs image, Lab histogram Bhattacharyya 0..1"),
    ("compared_frames", "frames compared with the reference"),
    ("psnr_reference", "frames 1..N-1 vs reference frame k, mean dB"),
    ("ssim_reference", "frames 1..N-1 vs reference frame k, mean SSIM"),
    ("compared_source_frames", "frames compared with the source"),
    ("psnr_source", "every frame vs source frame k, mean dB"),
    ("warping_error_source", "the source's own warping error, same frames"),
    ("warping_ratio", "warping error / the source's, 1 = as steady as the source"),
)
# Per-frame lists the table shows under the rows (all of them are in --json).
_PER_FRAME = ("psnr_image", "delta_e_image", "hist_image", "psnr_frame0", "psnr_reference", "psnr_source")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="measure a video: flicker, warping error, motion, first-frame fidelity",
        description="Weight-free video metrics (OpenCV Farneback flow; proxies for the RAFT-based benchmark numbers).",
    )
    parser.add_argument("video", metavar="VIDEO", help="video file (mp4, webm, gif, webp, ...) or folder of frames")
    parser.add_argument(
        "--image", metavar="COND",
        help="conditioning image: adds first-frame PSNR / SSIM / MSE and frames 1..N-1 PSNR, SSIM, colour drift",
    )
    parser.add_argument(
        "--reference", metavar="CLIP",
        help="ground-truth clip (video file or folder of frames): PSNR / SSIM frame by frame, over the common frames",
    )
    parser.add_argument(
        "--source", metavar="CLIP",
        help="video-to-video source (video file or folder of frames): PSNR against it and warping error against its own",
    )
    parser.add_argument("--contact-sheet", metavar="PNG", help="also write the frames side by side to this PNG")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="only measure the first N frames")
    parser.add_argument(
        "--use-fps",
        action="store_true",
        help="resample by the file's fps (2 fps for motion score as SVD, 8 fps for dynamic degree as VBench)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from motionkit.metrics import adherence_report, evaluate_video, fit_video
    from motionkit.video_io import probe_video, read_video

    frames = read_video(args.video, max_frames=args.max_frames)
    height, width = frames.shape[1:3]
    image = _read_image(args.image, height, width) if args.image else None
    reference = fit_video(read_video(args.reference), height, width) if args.reference else None
    fps = probe_video(args.video).fps if args.use_fps else None
    report = evaluate_video(frames, image, fps=fps)
    report.update(adherence_report(frames, image, reference))
    source = _read_source(args.source, args.video, len(frames)) if args.source else None
    if source is not None:
        from motionkit.metrics import source_faithfulness

        faithfulness = source_faithfulness(frames, source)
        report["per_frame"].update(faithfulness.pop("per_frame"))
        report.update(faithfulness)
    notes = _notes(args, frames, report)
    if args.contact_sheet:
        from motionkit.contact_sheet import write_contact_sheet

        rows = [("image", image)] if image is not None else []
        rows.append(("video", frames))
        if reference is not None:
            rows.append(("reference", reference))
        if source is not None:
            rows.append(("source", fit_video(source, height, width)))
        notes.append(f"contact sheet: {write_contact_sheet(args.contact_sheet, rows)}")
    if args.json:
        print(json.dumps({"video": str(args.video), **json_safe(report), "notes": notes}, indent=2))
    else:
        print(format_report(report, title=str(args.video)))
        for line in notes:
            print(f"  note: {line}")
    return 0


def _read_source(source: str, video: str, frames: int) -> Any:
    """The source clip's frames as the video's sidecar says they were picked (fps, range), else all of them."""
    from motionkit.pipeline.video_input import read_source_video
    from motionkit.video_io import read_video, sidecar_path

    try:
        picked = json.loads(sidecar_path(video).read_text(encoding="utf-8")).get("video")
    except (OSError, ValueError, AttributeError):
        picked = None
    if not isinstance(picked, dict):
        return read_video(source, max_frames=frames)
    return read_source_video(
        source, fps=picked.get("fps"), source_fps=picked.get("source_fps"), start=int(picked.get("start") or 0),
        end=picked.get("end"), max_frames=frames,
    ).frames


def _read_image(path: str, height: int, width: int) -> Any:
    from motionkit.metrics import fit_image
    from motionkit.pipeline.image_input import load_image

    return fit_image(load_image(path), height, width)


def _notes(args: argparse.Namespace, frames: Any, report: dict[str, Any]) -> list[str]:
    """What the numbers do not say by themselves: what was resized, what was left out."""
    from PIL import Image

    notes = []
    height, width = frames.shape[1:3]
    if args.image:
        with Image.open(args.image) as opened:
            if opened.size != (width, height):
                notes.append(f"image {opened.size[0]}x{opened.size[1]} fitted to {width}x{height} (resize to cover, centre crop)")
    if args.reference:
        if report["reference_frames"] != report["frames"]:
            notes.append(
                f"reference has {report['reference_frames']} frames and the video {report['frames']}: "
                f"compared over the first {report['compared_frames']}"
            )
    if args.source and report["source_frames"] != report["frames"]:
        notes.append(
            f"source gives {report['source_frames']} frames and the video {report['frames']}: "
            f"compared over the first {report['compared_source_frames']}"
        )
    if report["frames"] < 3:
        notes.append("jump_ratio needs at least 3 frames (two later steps to compare with): nan")
    return notes


def json_safe(values: Any) -> Any:
    """``values`` with every non-finite float, at any depth, as None: JSON has no infinity or NaN (PSNR of
    identical images is inf)."""
    if isinstance(values, dict):
        return {k: json_safe(v) for k, v in values.items()}
    if isinstance(values, (list, tuple)):
        return [json_safe(v) for v in values]
    return None if isinstance(values, float) and not math.isfinite(values) else values


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
    per_frame = values.get("per_frame", {})
    shown = [name for name in _PER_FRAME if name in per_frame]
    if shown:
        lines.append("  per frame (frame 0 first):")
        width = max(len(name) for name in shown)
        for name in shown:
            lines.append(f"    {name:<{width}}  " + " ".join(f"{v:.2f}" if math.isfinite(v) else str(v) for v in per_frame[name]))
    return "\n".join(lines)

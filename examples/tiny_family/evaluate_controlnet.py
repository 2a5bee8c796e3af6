"""Does the depth ControlNet draw the scene its depth video describes? The family's ControlNet against text-to-video
without it, on world clips it never saw.

For held-out world clips (world seed ``--seed``, never a training seed; landscapes and patterns), the world renders
the frames and their exact depth and edge maps. Each caption is animated by ``motionkit animate`` with the family's
defaults as text-to-video, once without control and once with ``--controlnet CONTROLNET --control-video DEPTH``
(the clip's depth maps, same seed). ``motionkit.metrics.edge_alignment`` reads how much of each video's colour
gradient sits on the clip's true edges (1 = none more than anywhere), over frames 1..N-1. The real clip passed
through the family's VAE is the reference, the best this family could draw. Target: the ControlNet closes at least
half of the gap from text-to-video without it to the real clip, on the mean over clips. Beside it, for context:
image-to-video from the real frame 0 (what the family draws when it is handed the layout), and PSNR against the
real frames (colours come from the caption, so they are not a target).

    python examples/tiny_family/evaluate_controlnet.py --family motionkit/assets/tiny-family \\
        --out motionkit-out/tiny-family/eval-controlnet [--controlnet PATH[:SCALE]] [ANIMATE FLAGS]

Writes ``report.json``, a markdown table (also printed) and ``contact_sheet.png`` (depth, real, the two
text-to-video rows and the image-to-video row for the first clips).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from family_runs import add_kinds_flag, animate, evaluation_parser, parse_evaluation_args

HELD_OUT_SEED = 424270
SHARE_OF_GAP = 0.5


def held_out_clips(count: int, seed: int, frames: int, stride: int, size: int, kinds: tuple[str, ...]) -> list[dict]:
    """``count`` world clips of ``frames`` frames (``stride`` rendered frames apart), the draw ``render_clips``
    makes, each with its caption, its kind and its depth and edge maps, uint8."""
    from motionkit.data.world import caption, random_specs, render_clip, scene_kind

    out = []
    for spec in random_specs(count, seed, frames=frames, stride=stride, size=size, kinds=kinds):
        clip, maps = render_clip(spec, maps=True)
        out.append({"caption": caption(spec), "kind": scene_kind(spec), "frames": clip[::stride], "depth": maps["depth"][::stride],
                    "edges": maps["edges"][::stride]})
    return out


def gap_closed(with_control: float, without: float, real: float) -> float:
    """The share of the way from ``without`` to ``real`` that ``with_control`` went (1 = as the real clip)."""
    return (with_control - without) / (real - without) if real != without else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = evaluation_parser(__doc__, HELD_OUT_SEED, "clip", 8, 3)
    parser.add_argument("--controlnet", help="PATH[:SCALE]; default: FAMILY/controlnets/tiny-controlnet-depth")
    add_kinds_flag(parser)
    args, extra = parse_evaluation_args(parser, argv)
    args.controlnet = args.controlnet or str(args.family / "controlnets" / "tiny-controlnet-depth")

    from PIL import Image

    from motionkit.evaluation_files import run_settings, write_evaluation
    from motionkit.metrics import edge_alignment, frame_psnr
    from motionkit.pipeline.image_input import vae_round_trip
    from motionkit.pipeline.loading import load_base
    from motionkit.video_io import write_video

    vae = load_base(args.base, dtype=torch.float32, device="cpu")["vae"]
    work = args.out / "videos"
    work.mkdir(parents=True, exist_ok=True)
    rows, sheet = [], []
    for index, clip in enumerate(held_out_clips(args.count, args.seed, args.clip_frames, args.stride, args.size, args.kinds)):
        depth = np.repeat(clip["depth"][..., None], 3, axis=-1)
        depth_dir = write_video(depth, f"{work / f'clip-{index:03d}-depth'}/")  # a lossless PNG frame folder
        image_path = work / f"clip-{index:03d}-frame0.png"
        Image.fromarray(clip["frames"][0]).save(image_path)
        videos = {"real through the VAE": vae_round_trip(vae, clip["frames"])}
        runs = (("without", []), ("with", ["--controlnet", args.controlnet, "--control-video", str(depth_dir)]),
                ("image-to-video", ["--image", str(image_path)]))
        for name, flags in runs:
            videos[name] = animate(args.base, args.adapter, clip["caption"], args.sample_seed + index,
                                   work / f"clip-{index:03d}-{name}", [*extra, *flags])
            if videos[name].shape != clip["frames"].shape:
                raise SystemExit(f"animate made {videos[name].shape[0]} frames of {videos[name].shape[2]}x{videos[name].shape[1]}, "
                                 f"the real clip has {args.clip_frames} of {args.size}x{args.size}: pass --clip-frames/--size to match")
        row = {"caption": clip["caption"], "kind": clip["kind"]}
        for name, video in videos.items():  # frames 1..N-1: image-to-video's frame 0 is the real one
            row[f"edges {name}"] = edge_alignment(video[1:], clip["edges"][1:])
            row[f"psnr {name}"] = float(np.mean(frame_psnr(video[1:], clip["frames"][1:])))
        rows.append(row)
        if index < args.shown:
            sheet += [(f"{index} depth", depth), (f"{index} real", clip["frames"]),
                      (f"{index} without", videos["without"]), (f"{index} with ControlNet", videos["with"]),
                      (f"{index} image-to-video", videos["image-to-video"])]
        print(f"clip {index} ({clip['kind']}): " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in ("caption", "kind")), flush=True)

    def mean_of(chosen: list[dict]) -> dict[str, float]:
        return {key: float(np.mean([r[key] for r in chosen])) for key in chosen[0] if key not in ("caption", "kind")}

    def closed_by(values: dict[str, float]) -> float:
        return gap_closed(values["edges with"], values["edges without"], values["edges real through the VAE"])

    means = mean_of(rows)
    closed = closed_by(means)
    by_kind = {kind: closed_by(mean_of([r for r in rows if r["kind"] == kind])) for kind in sorted({r["kind"] for r in rows})}
    passed = bool(closed >= SHARE_OF_GAP)
    target = means["edges without"] + SHARE_OF_GAP * (means["edges real through the VAE"] - means["edges without"])
    table = "\n".join([
        "| videos | edge alignment, frames 1..N-1 (1 = none; mean over clips) | PSNR vs the real frames, dB | target | met |",
        "| --- | --- | --- | --- | --- |",
        f"| real clip through the VAE | {means['edges real through the VAE']:.3f} | {means['psnr real through the VAE']:.2f} | - | - |",
        f"| image-to-video from the real frame 0, no control (context) | {means['edges image-to-video']:.3f} | "
        f"{means['psnr image-to-video']:.2f} | - | - |",
        f"| text-to-video without control | {means['edges without']:.3f} | {means['psnr without']:.2f} | - | - |",
        f"| text-to-video with the depth ControlNet | {means['edges with']:.3f} | {means['psnr with']:.2f} | "
        f">= {target:.3f} (half the gap) | {'yes' if passed else 'NO'} |",
    ])
    table += "\n\nShare of the gap closed by kind of scene: " + ", ".join(
        f"{kind}s ({sum(r['kind'] == kind for r in rows)} clips) {share:.0%}" for kind, share in by_kind.items())
    report = {"settings": run_settings(args, extra), "mean": means, "gap_closed": closed, "gap_closed_by_kind": by_kind,
              "passed": passed, "clips": rows}
    write_evaluation(args.out, report, table, sheet)
    print(f"\n{table}\n\nthe ControlNet closes {closed:.0%} of the gap to the real clip: {'yes' if passed else 'NO'}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

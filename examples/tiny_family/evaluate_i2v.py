"""Does image-to-video hold its conditioning frame? The tiny family's targets, on world clips it never saw.

Every video is made by ``motionkit animate --image FRAME0 --prompt CAPTION`` itself, with its defaults (which
come from the models: the family's ``motionkit-app.json`` beside its bases, the adapter's training frames and
the base's native size); extra ``motionkit animate`` flags given here are passed on (``--strength 1``,
``--sparsectrl ENCODER``: frame 0 becomes its keyframe 0). Frames come back as lossless PNG folders.

For each held-out clip (world seed ``--seed``, never a training seed), frame 0 conditions the video and the
clip's caption is the prompt. Frames 1..N-1 are compared with what the same real clip looks like after the
family's VAE, the ceiling of anything the family decodes:

- adherence: PSNR of frames 1..N-1 against the image >= the VAE-passed real clip's - 0.5 dB;
- they move like the real clips: PSNR against their own frame 0 <= the real clip's + 2 dB, and a motion
  score of at least half the real clip's;
- no jump: frame-0-to-1 jump ratio <= 1.5;
- steadiness: warping error <= 2x the real clip's.

Context, not a target: clips whose caption pans the camera sideways are read with ``motionkit.metrics.camera_pan``,
the real clip's travel in the captioned direction beside the generated one's: does the video pan as captioned?

``--photos DIR`` also animates every photo there with a prompt that names no scene (``--photo-prompt``) and holds frames
1..N-1 to ``PHOTO_PSNR_DB`` against the photo at the family's size and to ``PHOTO_LAYOUT_KEPT`` of frame 0's edges where
the photo has them (``motionkit.metrics.layout_kept``), beside the VAE's round trip of it and what the family's
rule for unfamiliar images measured and chose. The VAE
itself is held to ``VAE_PSNR_DB`` and ``VAE_HIST`` on a round trip of held-out world frames (``--vae-frames``).

    python examples/tiny_family/evaluate_i2v.py --family motionkit/assets/tiny-family \\
        --out motionkit-out/tiny-family/eval-i2v [--photos motionkit/assets/examples/photos] [ANIMATE FLAGS]

Writes ``report.json``, a markdown table (also printed) and ``contact_sheet.png`` (real, VAE-passed real and
generated rows for the first clips, then photo and generated rows).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from family_runs import add_kinds_flag, animate, evaluation_parser, parse_evaluation_args

from motionkit.metrics import adherence_report, evaluate_video

HELD_OUT_SEED = 424242
TARGETS = {
    "psnr_image": "generated >= real through the VAE - 0.5 dB",
    "psnr_frame0": "generated <= real through the VAE + 2 dB",
    "motion_score": "generated >= half the real clip's",
    "jump_ratio": "generated <= 1.5",
    "warping_error": "generated <= 2x the real clip's",
}
# A photo out of the world keeps its colours and layout: frames 1..N-1 at least this close to it,
PHOTO_PSNR_DB = 15.0
# and drawing at least this share of frame 0's edges where the photo has them (motionkit.metrics.layout_kept):
# PSNR alone passed photos whose frames became a lawn in their mean colour.
PHOTO_LAYOUT_KEPT = 0.5
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# The VAE keeps detail: round trip of held-out world frames at least this PSNR and at most this histogram distance.
VAE_PSNR_DB, VAE_HIST = 26.0, 0.2


def measure(video: np.ndarray, image: np.ndarray) -> dict[str, float]:
    adherence = adherence_report(video, image)
    motion = evaluate_video(video)
    return {
        "psnr_image": adherence["psnr_image"],
        "psnr_frame0": adherence["psnr_frame0"],
        "jump_ratio": adherence["jump_ratio"],
        "hist_image": adherence["hist_image"],
        "motion_score": motion["motion_score"],
        "warping_error": motion["warping_error"],
    }


def verdicts(generated: dict[str, float], real: dict[str, float]) -> dict[str, bool]:
    return {
        "psnr_image": generated["psnr_image"] >= real["psnr_image"] - 0.5,
        "psnr_frame0": generated["psnr_frame0"] <= real["psnr_frame0"] + 2.0,
        "motion_score": generated["motion_score"] >= 0.5 * real["motion_score"],
        "jump_ratio": generated["jump_ratio"] <= 1.5,
        "warping_error": generated["warping_error"] <= 2.0 * real["warping_error"],
    }


def mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


# Caption words of a sideways pan, and which way camera_pan reads it.
PAN_DIRECTIONS = {"camera panning right": 1.0, "camera panning left": -1.0}


def captioned_pan(caption: str) -> float:
    """+1 or -1 for a caption that pans the camera right or left, else 0."""
    return next((sign for words, sign in PAN_DIRECTIONS.items() if words in caption), 0.0)


def image_flags(image: Path, extra: list[str]) -> list[str]:
    """``--image IMAGE`` and the flags passed on; with a SparseCtrl encoder and no keyframe given, the image is
    its keyframe 0 as well."""
    keyframe = ["--keyframe", f"0:{image}"] if "--sparsectrl" in extra and "--keyframe" not in extra else []
    return ["--image", str(image), *extra, *keyframe]


def _familiarity_cell(familiarity: dict | None) -> str:
    """What the family's unfamiliar-images rule measured and chose for a photo (``-``: no rule, or flags given)."""
    if not familiarity:
        return "-"
    chosen = "unfamiliar-image settings" if familiarity["applied"] else "the defaults"
    return f"{familiarity['findings']} ({chosen})"


def _photos(folder: Path | None) -> list[Path]:
    if folder is None:
        return []
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise SystemExit(f"{folder}: no photos ({', '.join(PHOTO_SUFFIXES)}) to animate")
    return photos


def main(argv: list[str] | None = None) -> int:
    parser = evaluation_parser(__doc__, HELD_OUT_SEED, "clip", 12, 4)
    add_kinds_flag(parser)
    parser.add_argument("--photos", type=Path, help="also animate the photos in this folder")
    parser.add_argument("--photo-prompt", default="static camera",
                        help="the photos' prompt (default: 'static camera', words of the world that name no scene)")
    parser.add_argument("--vae-frames", type=int, default=64, help="held-out world frames for the VAE's round trip")
    args, extra = parse_evaluation_args(parser, argv)

    from PIL import Image

    from motionkit.data.world import render_clips
    from motionkit.evaluation_files import run_settings, write_evaluation
    from motionkit.metrics import camera_pan, fit_image, histogram_distance, layout_kept, psnr
    from motionkit.pipeline.image_input import load_image, vae_round_trip
    from motionkit.pipeline.loading import load_base
    from motionkit.video_io import sidecar_path

    torch.manual_seed(0)
    vae = load_base(args.base, dtype=torch.float32, device="cpu")["vae"]
    clips, captions = render_clips(args.count, args.seed, frames=args.clip_frames, stride=args.stride, size=args.size, kinds=args.kinds)
    work = args.out / "videos"
    work.mkdir(parents=True, exist_ok=True)
    rows, sheet = [], []
    for index, (clip, prompt) in enumerate(zip(clips, captions)):
        image_path = work / f"clip-{index:03d}-frame0.png"
        Image.fromarray(clip[0]).save(image_path)
        video = animate(args.base, args.adapter, prompt, args.sample_seed + index, work / f"clip-{index:03d}", image_flags(image_path, extra))
        if video.shape != clip.shape:
            raise SystemExit(f"animate made {video.shape[0]} frames of {video.shape[2]}x{video.shape[1]}, the real clip has "
                             f"{clip.shape[0]} of {args.size}x{args.size}: pass --clip-frames/--size to match the family")
        through = vae_round_trip(vae, clip)
        generated, real = measure(video, clip[0]), measure(through, clip[0])
        row = {"caption": prompt, "generated": generated, "real_through_vae": real, "passed": verdicts(generated, real)}
        if direction := captioned_pan(prompt):  # travel in the captioned direction, px
            row["pan"] = {"real": direction * camera_pan(clip), "generated": direction * camera_pan(video)}
        rows.append(row)
        if index < args.shown:
            sheet += [(f"{index} real", clip), (f"{index} real/VAE", through), (f"{index} generated", video)]
        print(f"clip {index}: psnr_image {generated['psnr_image']:.2f} dB (real/VAE {real['psnr_image']:.2f}), "
              f"motion {generated['motion_score']:.2f} px (real {real['motion_score']:.2f})", flush=True)

    photos = []
    for index, path in enumerate(_photos(args.photos)):
        video = animate(args.base, args.adapter, args.photo_prompt, args.sample_seed + 1000 + index, work / f"photo-{path.stem}",
                        image_flags(path, extra))
        image = fit_image(load_image(path), video.shape[2], video.shape[1])
        reconstruction = vae_round_trip(vae, image[None])[0]
        adherence = adherence_report(video, image)
        layout = layout_kept(video, image)
        familiarity = json.loads(sidecar_path(work / f"photo-{path.stem}").read_text()).get("image_familiarity")
        photos.append({
            "photo": path.name,
            "psnr_image": adherence["psnr_image"],
            "layout_kept": layout,
            "hist_image": adherence["hist_image"],
            "vae_psnr": psnr(reconstruction, image),
            "motion_score": evaluate_video(video)["motion_score"],
            "familiarity": familiarity,
            "passed": bool(adherence["psnr_image"] >= PHOTO_PSNR_DB and layout >= PHOTO_LAYOUT_KEPT),
        })
        sheet += [(f"{path.stem}", np.repeat(image[None], len(video), axis=0)), (f"{path.stem} generated", video)]
        print(f"photo {path.name}: psnr_image {adherence['psnr_image']:.2f} dB (its VAE round trip {photos[-1]['vae_psnr']:.2f})", flush=True)

    # The VAE's own targets: round trip of held-out world frames (one per clip of a fresh seed).
    held_out, _ = render_clips(args.vae_frames, args.seed + 1, frames=1, size=args.size, kinds=args.kinds)
    frames = np.stack([clip[0] for clip in held_out])
    round_trip = vae_round_trip(vae, frames)
    vae_report = {
        "frames": len(frames),
        "psnr": float(np.mean([psnr(a, b) for a, b in zip(round_trip, frames)])),
        "hist": float(np.mean([histogram_distance(a, b) for a, b in zip(round_trip, frames)])),
    }
    generated, real = mean([r["generated"] for r in rows]), mean([r["real_through_vae"] for r in rows])
    passed = verdicts(generated, real)
    passed["vae"] = vae_report["psnr"] >= VAE_PSNR_DB and vae_report["hist"] <= VAE_HIST
    lines = [
        "| metric (means over clips, frames 1..N-1) | generated | real through the VAE | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, target in TARGETS.items():
        lines.append(f"| {key} | {generated[key]:.3f} | {real[key]:.3f} | {target} | {'yes' if passed[key] else 'NO'} |")
    pans = [r["pan"] for r in rows if "pan" in r]
    if pans:
        lines += ["", f"Captioned pans ({len(pans)} clips, context): the camera travels {np.mean([p['real'] for p in pans]):.2f} px in "
                  f"the captioned direction in the real clips, {np.mean([p['generated'] for p in pans]):.2f} px in the generated ones"]
    if photos:
        lines += ["", f"| photo | familiarity (settings) | frames 1..N-1 PSNR vs the photo (>= {PHOTO_PSNR_DB:g} dB) | "
                  f"layout kept (>= {PHOTO_LAYOUT_KEPT:g}) | its VAE round trip | histogram distance | motion | met |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {p['photo']} | {_familiarity_cell(p['familiarity'])} | {p['psnr_image']:.2f} | {p['layout_kept']:.2f} | "
                  f"{p['vae_psnr']:.2f} | {p['hist_image']:.3f} | {p['motion_score']:.2f} | {'yes' if p['passed'] else 'NO'} |"
                  for p in photos]
        passed["photos"] = all(p["passed"] for p in photos)
    lines += ["", f"VAE round trip of {vae_report['frames']} held-out world frames: {vae_report['psnr']:.2f} dB (>= {VAE_PSNR_DB:g}), "
              f"histogram distance {vae_report['hist']:.3f} (<= {VAE_HIST:g}): {'yes' if passed['vae'] else 'NO'}"]
    table = "\n".join(lines)
    report = {"settings": run_settings(args, extra), "mean": {"generated": generated, "real_through_vae": real}, "passed": passed,
              "clips": rows, "photos": photos, "vae": vae_report}
    write_evaluation(args.out, report, table, sheet)
    print(f"\n{table}\n\nall targets met: {'yes' if all(passed.values()) else 'NO'}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does image-to-video hold its conditioning frame? The tiny family's targets, on world clips it never saw.

For each held-out clip (world seed ``--seed``, never a training seed), frame 0 conditions the pipeline and
the clip's caption is the prompt, with the settings given (the family's image-to-video defaults unless
told otherwise). The generated frames 1..N-1 are compared with what the same real clip looks like after
the family's VAE, the ceiling of anything the family decodes:

- adherence: PSNR of frames 1..N-1 against the image >= the VAE-passed real clip's - 0.5 dB;
- they move like the real clips: PSNR against their own frame 0 <= the real clip's + 2 dB, and a motion
  score of at least half the real clip's;
- no jump: frame-0-to-1 jump ratio <= 1.5;
- steadiness: warping error <= 2x the real clip's.

    python examples/tiny_family/evaluate_i2v.py --family motionkit/assets/tiny-family \\
        --out motionkit-out/tiny-family/eval-i2v [--adapter PATH] [--strength 0.4] [--sparsectrl PATH]

Writes ``report.json``, a markdown table (also printed) and ``contact_sheet.png`` (real, VAE-passed real and
generated rows for the first clips).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from motionkit.metrics import adherence_report, evaluate_video

HELD_OUT_SEED = 424242
TARGETS = {
    "psnr_image": "generated >= real through the VAE - 0.5 dB",
    "psnr_frame0": "generated <= real through the VAE + 2 dB",
    "motion_score": "generated >= half the real clip's",
    "jump_ratio": "generated <= 1.5",
    "warping_error": "generated <= 2x the real clip's",
}


def measure(video: np.ndarray, image: np.ndarray) -> dict[str, float]:
    adherence = adherence_report(video, image)
    motion = evaluate_video(video)
    return {
        "psnr_image": adherence["psnr_image"],
        "psnr_frame0": adherence["psnr_frame0"],
        "jump_ratio": adherence["jump_ratio"],
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


def build_pipeline(args: argparse.Namespace):
    from motionkit.formats import load_control_model
    from motionkit.pipeline.build import assemble_pipeline
    from motionkit.pipeline.loading import load_adapter_for, load_base

    components = load_base(args.base, dtype=torch.float32, device="cpu")
    adapter = load_adapter_for(components, args.adapter)
    controlnet = None if args.sparsectrl is None else load_control_model(args.sparsectrl, torch_dtype=torch.float32)
    pipe = assemble_pipeline(components, adapter, scheduler=args.scheduler, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", type=Path, default=Path("motionkit/assets/tiny-family"))
    parser.add_argument("--base", type=Path, help="default: FAMILY/bases/tiny-base")
    parser.add_argument("--adapter", type=Path, help="default: FAMILY/adapters/tiny-motion")
    parser.add_argument("--sparsectrl", type=Path, help="a SparseCtrl RGB encoder folder: frame 0 as its keyframe")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--stride", type=int, default=2, help="rendered frames between video frames (training's)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="world seed of the held-out clips")
    parser.add_argument("--kinds", default="pattern", help="world scene kinds, comma-separated (the family's training world)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--scheduler", default="ddim")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--sheet-clips", type=int, default=4, help="clips shown in the contact sheet")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.base = args.base or args.family / "bases" / "tiny-base"
    args.adapter = args.adapter or args.family / "adapters" / "tiny-motion"

    from motionkit.contact_sheet import write_contact_sheet
    from motionkit.data.world import render_clips
    from motionkit.pipeline.image_input import vae_round_trip

    torch.manual_seed(0)
    pipe = build_pipeline(args)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    clips, captions = render_clips(args.clips, args.seed, frames=args.frames, stride=args.stride, size=args.size, kinds=kinds)
    extra = {} if args.strength == 1.0 else {"strength": args.strength}
    rows, sheet = [], []
    for index, (clip, prompt) in enumerate(zip(clips, captions)):
        image = clip[0]
        control = {} if args.sparsectrl is None else {"conditioning_frames": [image], "controlnet_frame_indices": [0]}
        output = pipe(
            prompt, image=image, num_frames=args.frames, height=args.size, width=args.size,
            num_inference_steps=args.steps, guidance_scale=args.guidance, output_type="np",
            generator=torch.Generator().manual_seed(args.sample_seed + index), **extra, **control,
        )
        video = (np.clip(output.frames[0], 0.0, 1.0) * 255).round().astype(np.uint8)
        through = vae_round_trip(pipe.vae, clip)
        generated, real = measure(video, image), measure(through, image)
        rows.append({"caption": prompt, "generated": generated, "real_through_vae": real, "passed": verdicts(generated, real)})
        if index < args.sheet_clips:
            sheet += [(f"{index} real", clip), (f"{index} real/VAE", through), (f"{index} generated", video)]
        print(f"clip {index}: psnr_image {generated['psnr_image']:.2f} dB (real/VAE {real['psnr_image']:.2f}), "
              f"motion {generated['motion_score']:.2f} px (real {real['motion_score']:.2f})", flush=True)

    generated, real = mean([r["generated"] for r in rows]), mean([r["real_through_vae"] for r in rows])
    passed = verdicts(generated, real)
    lines = [
        "| metric (means over clips, frames 1..N-1) | generated | real through the VAE | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, target in TARGETS.items():
        lines.append(f"| {key} | {generated[key]:.3f} | {real[key]:.3f} | {target} | {'yes' if passed[key] else 'NO'} |")
    table = "\n".join(lines)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"settings": settings, "mean": {"generated": generated, "real_through_vae": real}, "passed": passed, "clips": rows}
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "table.md").write_text(table + "\n", encoding="utf-8")
    write_contact_sheet(args.out / "contact_sheet.png", sheet)
    print(f"\n{table}\n\nall targets met: {'yes' if all(passed.values()) else 'NO'}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

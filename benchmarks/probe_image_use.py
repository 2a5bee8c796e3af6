"""Does an image-to-video model use its image? Noise-prediction error per timestep on held-out world clips,
with the real conditioning frame, with a zero condition, and the copy-frame-0 baseline (no network); and
whether the motion modules help at all: the zero condition against the image model alone (no motion modules).

Probes the adapter's image branch and, when there is one, a SparseCtrl encoder (``SparseControlNetModel``)
beside the same adapter. Logic in ``motionkit.train.probe``; on CPU in well under a minute.

    python benchmarks/probe_image_use.py                                   # the shipped tiny family
    python benchmarks/probe_image_use.py --adapter motionkit-out/tiny-family/motion/adapter \\
        --encoder motionkit-out/tiny-family/encoder/encoder --out probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from motionkit.family import shipped_family_dir
from motionkit.train.probe import (
    PROBE_SEED,
    PROBE_TIMESTEPS,
    branch_predictor,
    encoder_predictor,
    format_table,
    image_model_predictor,
    probe_image_use,
    world_clips,
)

ENCODER = Path("encoders") / "tiny-sparsectrl-rgb"


def shown(path: str) -> str:
    """``path`` relative to the working folder when it lies inside it (reports carry no machine paths)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path


def main(argv: list[str] | None = None) -> int:
    family = shipped_family_dir()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=str(family / "bases" / "tiny-base"), help="diffusers base pipeline folder")
    parser.add_argument("--adapter", default=str(family / "adapters" / "tiny-motion"), help="motion adapter with an image branch")
    parser.add_argument("--encoder", default=str(family / ENCODER), help="SparseControlNetModel folder ('none': skip)")
    parser.add_argument("--clips", type=int, default=16, help="held-out clips")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--stride", type=int, default=2, help="rendered frames between probe frames (training's stride)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=PROBE_SEED, help="world seed of the held-out clips (never a training seed)")
    parser.add_argument("--noise-seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, nargs="+", default=list(PROBE_TIMESTEPS))
    parser.add_argument("--prompt", choices=("caption", "empty"), default="caption", help="text condition: the clips' captions or none")
    parser.add_argument(
        "--kinds", default="landscape,pattern",
        help="world scene kinds of the held-out clips, comma-separated (default: landscape,pattern, the world the shipped "
        "family saw; pattern alone for a family built before landscapes)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/probe_image_use.json"))
    args = parser.parse_args(argv)
    args.base, args.adapter = shown(args.base), shown(args.adapter)
    args.encoder = args.encoder if args.encoder == "none" else shown(args.encoder)

    from motionkit.formats import load_adapter
    from motionkit.injection import inject
    from motionkit.train.base import load_base

    torch.manual_seed(0)
    base = load_base(args.base)
    base.freeze(torch.device("cpu"), torch.float32)
    adapter = load_adapter(args.adapter, torch_dtype=torch.float32).eval()
    motion_unet = inject(base.unet, adapter)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    pixels, captions = world_clips(args.clips, args.frames, args.stride, args.size, args.seed, kinds=kinds)
    latents = base.encode_frames(pixels).float()  # posterior means
    prompts = captions if args.prompt == "caption" else [""] * len(captions)
    hidden, _ = base.encode_prompts(prompts, args.size, args.size)
    alphas = base.scheduler.alphas_cumprod
    timesteps = tuple(args.timesteps)
    settings = {k: getattr(args, k) for k in ("clips", "frames", "stride", "size", "seed", "noise_seed", "prompt", "kinds")}
    report = {"settings": {**settings, "base": args.base, "adapter": args.adapter}, "models": {}}

    print(f"image use on {args.clips} held-out world clips (seed {args.seed}), eps MSE on frames 1..{args.frames - 1}")
    image_model = image_model_predictor(motion_unet)
    rows = probe_image_use(
        branch_predictor(motion_unet, latents), latents, hidden, alphas, timesteps, args.noise_seed, baseline=image_model
    )
    report["models"]["branch"] = [r.as_dict() for r in rows]
    print(f"\nadapter image branch ({args.adapter})\n{format_table(rows)}")
    if args.encoder != "none" and Path(args.encoder).is_dir():
        from diffusers import SparseControlNetModel

        from motionkit.train.encoder import EncoderDenoiser

        encoder = SparseControlNetModel.from_pretrained(args.encoder, torch_dtype=torch.float32).eval()
        predict = encoder_predictor(EncoderDenoiser(encoder, motion_unet), latents)
        rows = probe_image_use(predict, latents, hidden, alphas, timesteps, args.noise_seed, ("real", "zero", "none"))
        report["models"]["encoder"] = [r.as_dict() for r in rows]
        report["settings"]["encoder"] = args.encoder
        print(f"\nSparseCtrl encoder ({args.encoder})\n{format_table(rows)}")
    elif args.encoder != "none":
        print(f"\n(no encoder at {args.encoder}: skipped)")
    verdicts = {name: all(r["real"] < r["zero"] for r in rows) for name, rows in report["models"].items()}
    report["uses_image_at_every_t"] = verdicts
    report["motion_modules_help_at_every_t"] = all(r["zero"] < r["image_model"] for r in report["models"]["branch"])
    print("\nimage lowers the error at every t: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in verdicts.items()))
    print(f"motion modules lower the error at every t: {'yes' if report['motion_modules_help_at_every_t'] else 'NO'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

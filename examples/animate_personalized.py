"""Animate a personalized image model with a motion adapter (text-to-video, optionally with a MotionLoRA).

The adapter was never trained on this checkpoint: it animates any checkpoint of the family it was
trained for (SD 1.x adapters: any SD 1.x fine-tune; SDXL adapters: SDXL ones).

    python examples/animate_personalized.py --quick                 # the tiny family, a few seconds
    python examples/animate_personalized.py --base dreamshaper_8.safetensors --adapter mm_sd_v15_v2.ckpt \\
        --prompt "a lighthouse on a cliff, storm, waves crashing" --motion-lora v2_lora_ZoomIn.ckpt:0.8 \\
        --frames 16 --steps 25 --out lighthouse.mp4
"""

from __future__ import annotations

from pathlib import Path

import _shared


def main() -> None:
    parser = _shared.parser(__doc__)
    parser.set_defaults(prompt=_shared.WORLD_PROMPT)
    parser.add_argument("--negative-prompt", help='what to steer away from, e.g. "blurry, low quality"')
    parser.add_argument("--motion-lora", metavar="PATH[:SCALE]", help="a MotionLoRA (camera move) on the adapter")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--out", type=Path, default=_shared.OUT / "personalized.mp4")
    args = parser.parse_args()

    family = None if (args.base and args.adapter) else _shared.family(args)
    pipe = _shared.load_pipeline(args.base or family.personalized, args.adapter or family.adapter, args.device)
    if args.motion_lora:
        from motionkit.formats import apply_motion_lora
        from motionkit.pipeline.lora import parse_lora_spec

        path, scale = parse_lora_spec(args.motion_lora)
        apply_motion_lora(pipe.adapter, path, scale=scale)

    video = pipe(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        guidance_scale=args.guidance,
        generator=_shared.generator(args.seed),
        output_type="np",
        **_shared.settings(args),
    ).frames[0]
    _shared.save(video, args.out)


if __name__ == "__main__":
    main()

"""Image-to-video: animate a first frame, then measure how steady the video is and how true its first
frame stays to the image.

Adapters with an image-conditioning branch (PIA layout, like the tiny family's) see the image on every
frame and take a ``--motion-scale`` preset (0-8: more motion as it grows); any other adapter works
training-free: the image becomes frame 0 and the rest start from it (``--strength`` < 1 keeps closer to it).

    python examples/image_to_video.py --quick
    python examples/image_to_video.py --image photo.png --base realisticVision.safetensors \\
        --adapter animatediff_pia.safetensors --prompt "a woman smiling, hair in the wind" --motion-scale 1
"""

from __future__ import annotations

from pathlib import Path

import _shared


def main() -> None:
    parser = _shared.parser(__doc__)
    parser.add_argument("--image", help="the first frame (default: the tiny family's conditioning frame)")
    parser.add_argument("--motion-scale", type=int, help="conditioning adapters: motion preset 0-8")
    parser.add_argument("--strength", type=float, default=1.0, help="fraction of the schedule run from the noised image")
    parser.add_argument("--noise-aug", type=float, default=0.0, help="noise added to the conditioning latent")
    parser.add_argument("--out", type=Path, default=_shared.OUT / "image-to-video.gif")
    args = parser.parse_args()

    from motionkit.commands.eval import format_report
    from motionkit.metrics import evaluate_video

    family = None if (args.base and args.adapter and args.image) else _shared.family(args)
    image = args.image or family.conditioning
    # The tiny family's frame comes with its caption when it has one; no prompt: the image alone conditions.
    prompt = args.prompt if args.prompt is not None else (family.prompt if family else "")
    pipe = _shared.load_pipeline(args.base or family.base, args.adapter or family.adapter, args.device)
    video = pipe(
        prompt=prompt,
        image=image,
        motion_scale=args.motion_scale,
        strength=args.strength,
        noise_aug_strength=args.noise_aug,
        generator=_shared.generator(args.seed),
        output_type="np",
        **_shared.settings(args),
    ).frames[0]
    written = _shared.save(video, args.out)

    # Metrics take uint8 frames; the image is resized to the frame size (give a square one for exact numbers).
    frames = (video.clip(0, 1) * 255).round().astype("uint8")
    print(format_report(evaluate_video(frames, image), title=f"{written} vs {image}"))


if __name__ == "__main__":
    main()

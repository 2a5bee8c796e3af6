"""Prompt travel over a long video: prompts keyed by frame, FreeNoise for a length past the adapter's
position table, and optionally SparseCtrl keyframes that pin chosen frames to images.

Keys are frames (``0``, ``16``), counted from the end (``-1``), or fractions of the way (``0.5``, ``"50%"``);
between keys the text embeddings are interpolated, past the last key the last prompt holds.

    python examples/prompt_travel.py --quick                  # the tiny family, a few seconds
    python examples/prompt_travel.py --base dreamshaper_8.safetensors --adapter v3_sd15_mm.ckpt --frames 64 \\
        --schedule "0: a flower bud, spring | 50%: a flower blooming | -1: a flower wilting, autumn" \\
        --sparsectrl v3_sd15_sparsectrl_rgb --keyframe 0:bud.png --keyframe=-1:wilted.png --out bloom.mp4

The command line does the same: ``motionkit animate --prompt-schedule "..." --free-noise``.
"""

from __future__ import annotations

from pathlib import Path

import _shared

# The tiny family's world: a ball that changes colour and shape as the video goes on.
WORLD_SCHEDULE = (
    "0: a red ball bouncing over a plain blue background, static camera"
    " | 50%: a green ball bouncing over a plain blue background, static camera"
    " | -1: a yellow square moving right over a plain blue background, static camera"
)


def main() -> None:
    parser = _shared.parser(__doc__)
    parser.set_defaults(frames=48)
    parser.add_argument("--schedule", default=WORLD_SCHEDULE, help="'KEY: PROMPT | KEY: PROMPT | ...'")
    parser.add_argument("--interpolation", choices=("linear", "slerp"), default="linear")
    parser.add_argument("--sparsectrl", help="SparseCtrl model folder or file (RGB or scribble)")
    parser.add_argument("--keyframe", action="append", default=[], metavar="INDEX:IMAGE", help="a SparseCtrl keyframe; repeat")
    parser.add_argument("--out", type=Path, default=_shared.OUT / "prompt-travel.mp4")
    args = parser.parse_args()

    from motionkit.pipeline.prompt_schedule import parse_schedule

    family = None if (args.base and args.adapter) else _shared.family(args)
    pipe = _shared.load_pipeline(args.base or family.base, args.adapter or family.adapter, args.device)
    control = {}
    if args.sparsectrl:
        from motionkit.formats import load_control_model

        pipe = type(pipe).from_components(pipe.components, pipe.adapter, controlnet=load_control_model(args.sparsectrl))
        keys = [spec.split(":", 1) for spec in args.keyframe]
        control = dict(conditioning_frames=[image for _, image in keys], controlnet_frame_indices=[int(i) for i, _ in keys])
    settings = _shared.settings(args)
    if args.quick:
        settings["num_frames"] = 12  # still past one FreeNoise window of 8
    schedule = parse_schedule(args.schedule)
    table = pipe.position_table or 16
    window = min(table, 8 if args.quick else 16)
    pipe.enable_free_noise(context_length=window, context_stride=max(1, window // 4))
    print(f"{settings['num_frames']} frames, keys at frames {schedule.frames(settings['num_frames'])}, FreeNoise window {window}")
    video = pipe(
        prompt=schedule, prompt_interpolation=args.interpolation, guidance_scale=4.0,
        generator=_shared.generator(args.seed), output_type="np", **settings, **control,
    ).frames[0]
    _shared.save(video, args.out)


if __name__ == "__main__":
    main()

"""Prompt travel over a long video: prompts keyed by frame, FreeNoise for a length past the adapter's
position table, and optionally SparseCtrl keyframes that pin chosen frames to images.

Keys are frames (``0``, ``16``), counted from the end (``-1``), or fractions of the way (``0.5``, ``"50%"``);
between keys the text embeddings are interpolated, past the last key the last prompt holds.

    python examples/prompt_travel.py --quick                  # the tiny family, a few seconds
    python examples/prompt_travel.py --keyframes-from-family  # + its SparseCtrl encoder, its frame on key 0
    python examples/prompt_travel.py --base dreamshaper_8.safetensors --adapter v3_sd15_mm.ckpt --frames 64 \\
        --schedule "0: a flower bud, spring | 50%: a flower blooming | -1: a flower wilting, autumn" \\
        --sparsectrl v3_sd15_sparsectrl_rgb --keyframe 0:bud.png --keyframe=-1:wilted.png --out bloom.mp4

The command line does the same: ``motionkit animate --prompt-schedule "..." --free-noise --sparsectrl DIR
--keyframe 0:IMAGE``; so does the app (Prompt travel, Long videos, Keyframes and control). With the tiny
family (``--quick`` where it ships its encoder, or ``--keyframes-from-family``), the encoder in
``encoders/`` pins frame 0 to the family's example frame while the prompts travel.
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
    parser.add_argument(
        "--keyframes-from-family", action="store_true",
        help="the tiny family's SparseCtrl encoder with its example frame on frame 0 (on by default with --quick when it has one)",
    )
    parser.add_argument("--out", type=Path, default=_shared.OUT / "prompt-travel.mp4")
    args = parser.parse_args()

    from motionkit.pipeline.prompt_schedule import parse_schedule

    family = None if (args.base and args.adapter) else _shared.family(args)
    pipe = _shared.load_pipeline(args.base or family.base, args.adapter or family.adapter, args.device)
    if family is not None and not args.sparsectrl and (args.keyframes_from_family or args.quick):
        from motionkit.models_folder import ModelsFolder

        encoders = ModelsFolder(family.root).listing("encoder")
        if encoders:  # the shipped family has one; a stand-in may not
            args.sparsectrl = str(next(iter(encoders.values())))
            args.keyframe = [f"0:{family.conditioning}"]
        elif args.keyframes_from_family:
            parser.error(f"{family.root} has no SparseCtrl encoder in encoders/: pass --sparsectrl and --keyframe")
    control = {}
    if args.sparsectrl:
        from motionkit.formats import load_control_model

        encoder = load_control_model(args.sparsectrl, torch_dtype=pipe.unet.dtype).to(pipe.unet.device)
        pipe.register_modules(controlnet=encoder)  # the control model of a pipeline already built
        keys = [spec.split(":", 1) for spec in args.keyframe]
        control = dict(conditioning_frames=[image for _, image in keys], controlnet_frame_indices=[int(i) for i, _ in keys])
    settings = _shared.settings(args)
    if args.quick:
        settings["num_frames"] = 12  # still past one FreeNoise window of 8
    schedule = parse_schedule(args.schedule)
    table = pipe.position_table or 16
    window = min(table, 8 if args.quick else 16)
    pipe.enable_free_noise(context_length=window, context_stride=max(1, window // 4))
    pinned = f", keyframes at {control['controlnet_frame_indices']}" if control else ""
    print(f"{settings['num_frames']} frames, keys at frames {schedule.frames(settings['num_frames'])}, FreeNoise window {window}{pinned}")
    video = pipe(
        prompt=schedule, prompt_interpolation=args.interpolation, guidance_scale=4.0,
        generator=_shared.generator(args.seed), output_type="np", **settings, **control,
    ).frames[0]
    _shared.save(video, args.out)


if __name__ == "__main__":
    main()

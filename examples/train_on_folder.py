"""Train a motion adapter on a folder of videos, then sample with it.

The folder holds video files, each with an optional caption beside it (``clip.mp4`` + ``clip.txt``).
Settings come from a training config (``examples/train/*.yaml``); the options here override its base
model, data folder, step count and output folder. ``--quick`` renders a few toy-world clips and trains
two steps on the tiny family's base model.

    python examples/train_on_folder.py --quick
    python examples/train_on_folder.py my_videos/ --base tiny-base/ --config examples/train/tiny_cpu.yaml --max-steps 200
    python examples/train_on_folder.py my_videos/ --base v1-5-pruned-emaonly.safetensors \\
        --config examples/train/sd15_motion.yaml --max-steps 5000    # on a GPU; see examples/train/README.md
"""

from __future__ import annotations

from pathlib import Path

import _shared


def main() -> None:
    parser = _shared.parser(__doc__, models=False)
    parser.add_argument("videos", nargs="?", type=Path, help="folder of videos (with .txt captions)")
    parser.add_argument("--base", help="base image model (default: the tiny family's base)")
    parser.add_argument("--config", type=Path, default=_shared.TINY_CONFIG, help="training config (default examples/train/tiny_cpu.yaml)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (default: the config's)")
    parser.add_argument("--out", type=Path, default=_shared.OUT / "train-on-folder", help="run folder")
    parser.add_argument("--prompt", default=_shared.WORLD_PROMPT, help="what the sample video shows")
    args = parser.parse_args()
    if args.videos is None and not args.quick:
        parser.error("give a folder of videos, or --quick to render a few toy clips")

    from motionkit.train import Trainer

    base = args.base or _shared.family(args).base
    videos = args.videos
    if videos is None:
        from motionkit.data.world import write_world_dataset

        videos = write_world_dataset(args.out / "data", n_clips=4, frames=8, size=64, seed=args.seed) / "videos"
    config = _shared.train_config(args, args.config, base, videos, args.out / "run")
    result = Trainer(config).train()
    print(f"trained {result.steps} steps, final loss {result.history[-1]['loss']:.4f}; adapter: {result.exported['motionkit']}")

    pipe = _shared.load_pipeline(base, result.exported["motionkit"], args.device)
    frames, steps = (_shared.QUICK_FRAMES, _shared.QUICK_STEPS) if args.quick else (config.data.n_frames, 25)
    video = pipe(
        prompt=args.prompt,
        num_frames=frames,
        num_inference_steps=steps,
        height=config.data.size,
        width=config.data.size,
        generator=_shared.generator(args.seed),
        output_type="np",
    ).frames[0]
    _shared.save(video, args.out / "sample.mp4")


if __name__ == "__main__":
    main()

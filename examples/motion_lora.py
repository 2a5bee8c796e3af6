"""Train a MotionLoRA (one camera move) on top of a motion adapter, then apply it at several scales.

A MotionLoRA is a low-rank update of the adapter's temporal attention only: a few MB that teach a frozen
adapter one kind of motion (a pan, a zoom). Stack several with ``apply_motion_lora``, weigh them with
``set_motion_lora_scale``, take them off again with ``remove_motion_lora``. The original AnimateDiff
MotionLoRAs (``v2_lora_ZoomIn.ckpt`` ...) load the same way.

    python examples/motion_lora.py --quick                        # 2 steps on toy clips, the tiny family
    python examples/motion_lora.py --move "zoom in" --clips 32 --max-steps 300
    python examples/motion_lora.py --lora v2_lora_PanLeft.ckpt --base dreamshaper_8.safetensors \\
        --adapter mm_sd_v15_v2.ckpt --prompt "a castle on a hill at sunset"     # apply one, no training
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import _shared


def write_camera_clips(folder: Path, move: str, n: int, frames: int, size: int, seed: int) -> Path:
    """``n`` toy-world clips that all share one camera move, captioned, in ``folder``."""
    import numpy as np

    from motionkit.data.world import camera_for, caption, random_spec, render_clip
    from motionkit.video_io import write_video

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        spec = dataclasses.replace(random_spec(rng, frames=frames, size=size), camera=camera_for(move))
        write_video(render_clip(spec), folder / f"{i:03d}.mp4", fps=8, crf=4)
        (folder / f"{i:03d}.txt").write_text(caption(spec) + "\n", encoding="utf-8")
    return folder


def main() -> None:
    parser = _shared.parser(__doc__)
    parser.add_argument("--lora", type=Path, help="apply this MotionLoRA instead of training one")
    parser.add_argument("--move", default="pan left", help="camera move to train: pan left/right/up/down, zoom in/out")
    parser.add_argument("--clips", type=int, default=16, help="toy clips to train on")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0], help="LoRA scales to sample with")
    parser.add_argument("--out", type=Path, default=_shared.OUT / "motion-lora")
    args = parser.parse_args()

    family = None if (args.base and args.adapter) else _shared.family(args)
    base, adapter = args.base or family.base, args.adapter or family.adapter
    lora = args.lora
    if lora is None:
        from motionkit.train import Trainer

        videos = write_camera_clips(args.out / "clips", args.move, 2 if args.quick else args.clips, 8, 64, args.seed)
        config = _shared.train_config(
            args, _shared.TINY_CONFIG, base, videos, args.out / "run",
            "lora.enabled=true", f"lora.base_adapter={adapter}", f"lora.rank={args.rank}", f"lora.alpha={args.rank}",
        )
        result = Trainer(config).train()
        lora = Path(result.exported["motion_lora"])
        print(f"trained a rank-{args.rank} MotionLoRA for '{args.move}' in {result.steps} steps: {lora}")

    from motionkit.formats import apply_motion_lora, set_motion_lora_scale
    from motionkit.metrics import motion_score

    pipe = _shared.load_pipeline(base, adapter, args.device)
    name = apply_motion_lora(pipe.adapter, lora, scale=1.0, name="camera")
    camera = "camera " + args.move.replace("pan", "panning").replace("zoom", "zooming")
    prompt = args.prompt or _shared.WORLD_PROMPT.replace("static camera", camera)
    for scale in args.scales:
        set_motion_lora_scale(pipe.adapter, name, scale)
        video = pipe(prompt=prompt, generator=_shared.generator(args.seed), output_type="np", **_shared.settings(args)).frames[0]
        _shared.save(video, args.out / f"scale-{scale:g}.mp4")
        frames = (video.clip(0, 1) * 255).round().astype("uint8")
        print(f"  LoRA scale {scale:g}: motion score {motion_score(frames):.3f} px per frame")


if __name__ == "__main__":
    main()

"""Write what ``tiny_cpu.yaml`` trains on: a tiny random base model (diffusers folder) and a few short
synthetic videos with captions. Nothing is downloaded.

    python examples/train/make_tiny_data.py [--out motionkit-out/tiny-data]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="motionkit-out/tiny-data", help="folder to write base/ and videos/ into")
    parser.add_argument("--videos", type=int, default=8)
    args = parser.parse_args()

    from diffusers import StableDiffusionPipeline

    from motionkit.data.synthetic import moving_pattern
    from motionkit.tiny import tiny_pipeline_components
    from motionkit.video_io import write_video

    out = Path(args.out)
    pipe = StableDiffusionPipeline(
        **tiny_pipeline_components(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(out / "base")
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for i in range(args.videos):
        speed = 0.5 + i % 4
        frames = moving_pattern(24, 64, 64, speed=speed, hue=i % 3, seed=i)
        write_video(frames, videos / f"pattern{i:02d}.mp4", fps=8)
        (videos / f"pattern{i:02d}.txt").write_text(f"a texture panning right, speed {speed:g}", encoding="utf-8")
    print(f"wrote {out / 'base'} and {args.videos} videos in {videos}")


if __name__ == "__main__":
    main()

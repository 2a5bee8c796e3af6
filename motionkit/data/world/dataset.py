"""The world as a dataset folder: captioned clips for the motion models, frames for the image model, and
(on request) the clips' depth and edge maps for a ControlNet, paired with the clips by name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from motionkit.data.world.common import MAPS, STYLES
from motionkit.data.world.scene import KINDS, Spec, caption, random_spec, render_clip


def _check_maps(maps: Sequence[str]) -> tuple[str, ...]:
    unknown = [name for name in maps if name not in MAPS]
    if unknown:
        raise ValueError(f"maps {', '.join(unknown)} are not among {', '.join(MAPS)}")
    return tuple(dict.fromkeys(maps))


def random_specs(
    count: int,
    seed: int,
    *,
    frames: int = 8,
    stride: int = 1,
    size: int = 64,
    style: str = "natural",
    kinds: tuple[str, ...] = KINDS,
) -> list[Spec]:
    """The ``count`` clip specs ``render_clips`` renders for these arguments (deterministic in ``seed``), each long
    enough for ``frames`` frames ``stride`` rendered frames apart: for callers that also want a clip's maps or kind."""
    rng = np.random.default_rng(seed)
    return [random_spec(rng, style=style, frames=(frames - 1) * stride + 1, size=size, kinds=kinds) for _ in range(count)]


def render_clips(
    count: int,
    seed: int,
    *,
    frames: int = 8,
    stride: int = 1,
    size: int = 64,
    style: str = "natural",
    kinds: tuple[str, ...] = KINDS,
) -> tuple[list[np.ndarray], list[str]]:
    """``count`` clips drawn from ``seed`` (deterministic): uint8 ``[frames, size, size, 3]`` each, every
    ``stride``-th rendered frame from frame 0, and their captions. Held-out evaluation clips come from here."""
    specs = random_specs(count, seed, frames=frames, stride=stride, size=size, style=style, kinds=kinds)
    return [render_clip(spec)[::stride] for spec in specs], [caption(spec) for spec in specs]


def write_world_dataset(
    out_dir: str | Path,
    n_clips: int,
    frames: int = 16,
    size: int = 64,
    style: str = "natural",
    seed: int = 0,
    images_per_clip: int = 1,
    maps: Sequence[str] = (),
    kinds: tuple[str, ...] = KINDS,
) -> Path:
    """``out_dir/videos/clip_NNNNN.mp4`` (+ ``.txt`` caption) and ``out_dir/images/clip_NNNNN_K.png`` (+ ``.txt``):
    ``n_clips`` clips and ``images_per_clip`` random frames of each, for the image model; for each name in
    ``maps`` (``"depth"``, ``"edges"``) also ``out_dir/maps/NAME/clip_NNNNN.mp4``, grey, same frames.
    Returns ``out_dir``."""
    from PIL import Image
    from tqdm.auto import tqdm

    from motionkit.utils.atomic import atomic_path, atomic_write
    from motionkit.video_io import write_video

    maps = _check_maps(maps)
    out = Path(out_dir)
    videos, images = out / "videos", out / "images"
    for folder in (videos, images, *(out / "maps" / name for name in maps)):
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in tqdm(range(n_clips), desc=f"world ({style})", unit="clip"):
        spec = random_spec(rng, style=style, frames=frames, size=size, kinds=kinds)
        if maps:
            clip, rendered = render_clip(spec, maps=True)
        else:
            clip, rendered = render_clip(spec), {}
        text = caption(spec) + "\n"
        name = f"clip_{i:05d}"
        # Near-lossless: at 64 px, default H.264 quality smears the texture the models should learn.
        write_video(clip, videos / f"{name}.mp4", fps=8, crf=4)
        with atomic_write(videos / f"{name}.txt", durable=False) as f:
            f.write(text)
        for map_name in maps:
            grey = np.repeat(rendered[map_name][..., None], 3, axis=-1)
            write_video(grey, out / "maps" / map_name / f"{name}.mp4", fps=8, crf=4)
        for k, t in enumerate(rng.choice(frames, size=min(images_per_clip, frames), replace=False)):
            with atomic_path(images / f"{name}_{k}.png", durable=False) as tmp:
                Image.fromarray(clip[int(t)]).save(tmp, format="PNG")
            with atomic_write(images / f"{name}_{k}.txt", durable=False) as f:
                f.write(text)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m motionkit.data.world OUT --clips N [--frames F] [--size S] [--style STYLE] [--seed K]
    [--maps depth,edges] [--kinds landscape,pattern]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m motionkit.data.world", description="Render a world dataset.")
    parser.add_argument("out", type=Path, help="output folder (videos/ and images/ go inside, and maps/ with --maps)")
    parser.add_argument("--clips", type=int, required=True)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--style", default="natural", choices=STYLES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images-per-clip", type=int, default=1)
    parser.add_argument("--maps", default="", help=f"comma-separated maps to write too, of {','.join(MAPS)}")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated scene kinds, of {','.join(KINDS)}")
    args = parser.parse_args(argv)
    maps = [name for name in args.maps.split(",") if name]
    kinds = tuple(name for name in args.kinds.split(",") if name)
    bad_maps = [name for name in maps if name not in MAPS]
    if bad_maps:
        parser.error(f"--maps {','.join(bad_maps)}: unknown map; use a comma-separated list of {','.join(MAPS)}")
    bad_kinds = [name for name in kinds if name not in KINDS]
    if bad_kinds or not kinds:
        parser.error(f"--kinds {args.kinds!r}: unknown scene kind; use a comma-separated list of {','.join(KINDS)}")
    write_world_dataset(
        args.out, args.clips, args.frames, args.size, args.style, args.seed, args.images_per_clip, maps=maps, kinds=kinds
    )
    return 0

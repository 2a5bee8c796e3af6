"""What the example scripts share: the tiny model family as their default models, ``--quick``, loading a
pipeline from a base checkpoint and an adapter, and writing a video. Not an example itself."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

OUT = Path("motionkit-out") / "examples"
# A caption of the toy world the tiny family knows (its vocabulary is the world's caption words).
WORLD_PROMPT = "a red ball bouncing over a plain blue background, static camera"
# --quick: enough to see every step run on the tiny family, in seconds.
QUICK_FRAMES, QUICK_STEPS = 4, 2
QUICK_TRAIN = [
    "max_steps=2", "batch_size=1", "data.n_frames=4", "data.stride=1", "checkpoint_every=0", "validation.every=0",
    "export_formats=[motionkit]",
]
# The training recipe the examples start from (a laptop-CPU run on 64 px clips).
TINY_CONFIG = Path(__file__).resolve().parent / "train" / "tiny_cpu.yaml"


def parser(doc: str | None, *, models: bool = True) -> argparse.ArgumentParser:
    """A parser with ``--quick``, ``--models-dir``, ``--seed`` and ``--device``; with ``models``, also the
    base / adapter / prompt / frames / steps options every sampling example takes."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few frames and steps: checks that everything runs")
    p.add_argument("--models-dir", type=Path, help="models folder in the tiny family's layout (default: the shipped one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    if models:
        p.add_argument("--base", help="base model: diffusers folder or .safetensors/.ckpt (default: the tiny family's)")
        p.add_argument("--adapter", help="motion adapter: AnimateDiff, diffusers or motionkit (default: the tiny family's)")
        p.add_argument("--prompt", help="what the video shows")
        p.add_argument("--frames", type=int, default=16)
        p.add_argument("--steps", type=int, default=25)
    return p


def family(args: argparse.Namespace) -> Any:
    """The tiny family (``--models-dir`` or the shipped one), read only when an option needs its defaults."""
    from motionkit.family import TinyFamily

    return TinyFamily.find(args.models_dir)


def settings(args: argparse.Namespace) -> dict[str, int]:
    frames, steps = (QUICK_FRAMES, QUICK_STEPS) if args.quick else (args.frames, args.steps)
    return {"num_frames": frames, "num_inference_steps": steps}


def load_pipeline(base: str | Path, adapter: Any, device: str | None = None) -> Any:
    """A ``MotionPipeline`` (``MotionPipelineXL`` for SDXL) from a base model (diffusers folder or single
    ``.safetensors``/``.ckpt``, read offline) and an adapter (a path, checked to fit the base, or an object)."""
    from motionkit import MotionPipeline
    from motionkit.commands.animate import device_and_dtype
    from motionkit.pipeline.loading import load_adapter_for, load_base

    device, dtype = device_and_dtype(device)
    components = load_base(base, dtype=dtype, device=device)
    if isinstance(adapter, (str, Path)):
        adapter = load_adapter_for(components, adapter)
    pipe = MotionPipeline.from_components(components, adapter)
    pipe.set_progress_bar_config(leave=False)
    return pipe


def train_config(args: Any, config: Path, base: str | Path, videos: Path, run_dir: Path, *extra: str) -> Any:
    """``config`` (YAML) with this run's base model, data folder, output folder and seed; ``extra``: more
    ``key=value`` overrides; ``--quick`` shrinks it to two tiny steps. A rerun continues the run in ``run_dir``."""
    from motionkit.train import TrainConfig

    overrides = [
        f"base={base}", f"data.folder={videos}", f"output_dir={run_dir}", f"seed={args.seed}", "log_with=[]",
        "resume_from=latest",
    ]
    if getattr(args, "max_steps", None) is not None:
        overrides.append(f"max_steps={args.max_steps}")
    if args.device == "cpu":
        overrides.append("cpu=true")
    return TrainConfig.from_yaml(config, [*overrides, *extra, *(QUICK_TRAIN if args.quick else [])])


def generator(seed: int) -> Any:
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def save(frames: Any, path: Path, fps: float = 8) -> Path:
    from motionkit.video_io import write_video

    written = write_video(frames, path, fps=fps)
    print(f"wrote {written}")
    return written

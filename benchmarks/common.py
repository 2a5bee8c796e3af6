"""Timing, tables and result files shared by the benchmark scripts (run as ``python benchmarks/X.py``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import torch

# Stable Diffusion's VAE layout (diffusers' AutoencoderKL with SD's widths), for GPU-scale memory
# figures: decoding 16 frames at 512 px is a large share of the peak, which motionkit.tiny's toy VAE hides.
SD_VAE_CONFIG: dict[str, Any] = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    sample_size=512,
)


def sd_vae(seed: int = 0) -> Any:
    """An AutoencoderKL in SD's layout with random weights (no download)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**SD_VAE_CONFIG).eval()


# "cpu": this process's CPU time. With one thread on a machine other jobs share, it follows the work done
# rather than the share of the cores the scheduler gave; "wall" is what a user waits.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK_HELP = "wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine, with OMP_NUM_THREADS=1)"


def time_once(fn: Callable[[], Any], device: str) -> float:
    """Seconds for one call; on CUDA the queue is drained before and after."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    """``columns``: (row key, heading) pairs; text columns left-aligned, numbers right-aligned."""
    widths = [max(len(heading), *(len(str(r[key])) for r in rows)) for key, heading in columns]

    def cell(value: Any, width: int) -> str:
        return str(value).rjust(width) if isinstance(value, (int, float)) else str(value).ljust(width)

    print("  ".join(heading.rjust(w) for (_, heading), w in zip(columns, widths)))
    for r in rows:
        print("  ".join(cell(r[key], w) for (key, _), w in zip(columns, widths)))


def write_rows(rows: list[dict[str, Any]], out: Path | None) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=2) + "\n")


def tiny_family_pipeline(models_dir: str | None = None, device: str = "cpu") -> tuple[Any, Any]:
    """The tiny family's base model with its motion adapter, and the family (paths, prompt, conditioning frame)."""
    from motionkit.commands.animate import assemble_pipeline, device_and_dtype, quiet_loading
    from motionkit.family import TinyFamily
    from motionkit.pipeline.loading import load_adapter_for, load_base

    family = TinyFamily.find(models_dir)
    device, dtype = device_and_dtype(device)
    with quiet_loading():
        base = load_base(family.base, dtype=dtype, device=device)
        adapter = load_adapter_for(base, family.adapter)
    pipe = assemble_pipeline(base, adapter)
    pipe.set_progress_bar_config(disable=True)
    return pipe, family


def video_metrics(frames: Any) -> dict[str, float]:
    """Steadiness, motion and drift of ``frames`` (``[F, H, W, 3]`` floats in [0, 1] or uint8)."""
    import numpy as np

    from motionkit.metrics import frame_psnr, mean_abs_frame_difference, motion_score, warping_error

    video = np.asarray(frames)
    if video.dtype != np.uint8:
        video = (np.clip(video, 0, 1) * 255).round().astype(np.uint8)
    drift = frame_psnr(video[1:], video[0])
    tail = max(1, len(drift) // 4)
    return {
        "warping_error": round(warping_error(video), 4),
        "flicker": round(mean_abs_frame_difference(video), 3),
        "motion_px": round(motion_score(video), 3),
        "psnr_vs_f0": round(float(np.mean(drift)), 2),
        "psnr_last_quarter_vs_f0": round(float(np.mean(drift[-tail:])), 2),
    }

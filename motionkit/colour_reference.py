"""A models folder's reference palette: the colours of the world its models learnt, and how far an image lies from it.

The image model's denoising error (``motionkit.pipeline.image_familiarity``) reads how busy an image is as much as
how foreign: a smooth photo (a cat's fur) scores like a flat world ground. Its colours still tell it apart. The
palette is the joint L*a*b* histograms (``motionkit.metrics.lab_histogram``) of frames of the world, one set per
style a base draws, and an image's colour distance is the Bhattacharyya distance of its own histogram to the
nearest of them: 0 when a frame of the world has its colours, towards 1 when none shares them.

A palette file is safetensors: one float tensor ``[frames, bins]`` per base name, or ``world`` for every base,
with the histogram's bins in its metadata so a file written for other bins is refused rather than misread.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motionkit.errors import MotionkitError

EVERY_BASE = "world"  # the tensor a base without one of its own reads
BINS_KEY = "lab_histogram_bins"


def _bins_text() -> str:
    from motionkit.metrics import LAB_HISTOGRAM_BINS

    return ",".join(str(b) for b in LAB_HISTOGRAM_BINS)


def palette_histograms(frames: Any) -> np.ndarray:
    """``[N, bins]`` float32: the flattened Lab histogram of each uint8 RGB frame of ``frames`` (``[N, H, W, 3]``)."""
    from motionkit.metrics import lab_histogram

    return np.stack([lab_histogram(frame).reshape(-1) for frame in frames]).astype(np.float32)


def write_palette(path: str | Path, palettes: dict[str, np.ndarray]) -> None:
    """Write ``palettes`` (a name, a base's or ``world``, to its ``palette_histograms``) to ``path``, atomically;
    float16 halves the file and moves a distance by about 2e-4."""
    from motionkit.formats.safe_load import save_safetensors

    if not palettes:
        raise MotionkitError(f"{path}: a palette needs at least one set of histograms")
    tensors = {name: torch.from_numpy(np.asarray(h, dtype=np.float32)).to(torch.float16) for name, h in palettes.items()}
    save_safetensors(tensors, path, metadata={BINS_KEY: _bins_text()})


@functools.lru_cache(maxsize=8)
def _read(path: str, modified: float) -> dict[str, np.ndarray]:
    from motionkit.formats.safe_load import read_tensor_file

    tensors, metadata = read_tensor_file(path)
    bins = _bins_text()
    if metadata.get(BINS_KEY) != bins:
        raise MotionkitError(f"{path}: a palette of {metadata.get(BINS_KEY) or 'unknown'} Lab histogram bins, this "
                             f"motionkit reads {bins}: write it again with calibrate_familiarity.py --write-palette")
    size = int(np.prod([int(b) for b in bins.split(",")]))
    palettes = {}
    for name, tensor in tensors.items():
        if tensor.ndim != 2 or tensor.shape[0] < 1 or tensor.shape[1] != size:
            raise MotionkitError(f"{path}: {name} has shape {list(tensor.shape)}, a palette needs [frames, {size}]")
        palettes[name] = tensor.to(torch.float32).numpy()
    return palettes


def read_palettes(path: str | Path) -> dict[str, np.ndarray]:
    """Every set of histograms in the palette file at ``path``, by name; one line naming the fault when the file
    is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise MotionkitError(f"{path}: no palette file there; write it with calibrate_familiarity.py --write-palette "
                             "or remove colour_distance_above from the declaration")
    return _read(str(path.resolve()), path.stat().st_mtime)


def read_palette(path: str | Path, base: str | None = None) -> np.ndarray:
    """The histograms of the palette file at ``path`` for the base named ``base`` (its own, else ``world``); one
    line naming the fault when the file is missing, unreadable or has neither."""
    palettes = read_palettes(path)
    name = base if base in palettes else EVERY_BASE
    if name not in palettes:
        raise MotionkitError(f"{path}: no histograms for base {base!r} nor {EVERY_BASE!r}; it holds "
                             f"{', '.join(sorted(palettes))}")
    return palettes[name]


def colour_distance(image: Any, palette: np.ndarray) -> float:
    """The Bhattacharyya distance (as ``cv2.HISTCMP_BHATTACHARYYA`` gives it for sum-1 histograms) of ``image``'s
    Lab histogram (a uint8 RGB frame) to the nearest histogram of ``palette``."""
    from motionkit.metrics import lab_histogram

    own = np.sqrt(lab_histogram(image).reshape(-1).astype(np.float64))
    overlap = np.sqrt(np.clip(palette.astype(np.float64), 0.0, None)) @ own
    return float(np.sqrt(np.clip(1.0 - overlap.max(), 0.0, 1.0)))

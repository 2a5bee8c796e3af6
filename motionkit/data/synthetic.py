"""Synthetic frames with known content (moving patterns, static shots; two hues make a hard cut).

Tests, examples and benchmarks use them because no video can be downloaded at run time; each pattern
is chosen so that curation has an unambiguous answer (a cut is a cut, static is static).
Write them to files with ``motionkit.video_io.write_video``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["moving_pattern", "static_pattern"]


def moving_pattern(
    n_frames: int, height: int = 48, width: int = 64, *, speed: float = 0.5, hue: int = 0, seed: int = 0
) -> np.ndarray:
    """uint8 ``[F, H, W, 3]``: a blurred-noise texture panning right by ``speed`` pixels per frame.

    Blurred noise gives optical flow texture at every scale (a smooth periodic pattern aliases), while
    consecutive frames differ little in colour, so no false scene cut appears. ``hue`` (0, 1 or 2)
    picks the dominant channel: patterns with hues 0 and 2 make a clear hard cut.
    """
    import cv2

    rng = np.random.default_rng(seed)
    pad = int(np.ceil(speed * n_frames)) + width
    texture = cv2.GaussianBlur(rng.normal(size=(height, pad)).astype(np.float32), (0, 0), 1.5)
    texture = (texture - texture.min()) / (np.ptp(texture) + 1e-6)
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    for t in range(n_frames):
        shift = int(round(speed * t))
        window = texture[:, pad - width - shift : pad - shift]
        for c in range(3):
            # The dominant channel stays above the others so the hue is defined everywhere (grey pixels
            # flip hue at random); all channels carry the texture so luma, which flow sees, has contrast.
            base, gain = (90.0, 160.0) if c == hue % 3 else (10.0, 70.0)
            frames[t, :, :, c] = (base + gain * window).astype(np.uint8)
    return frames


def static_pattern(n_frames: int, height: int = 48, width: int = 64, *, seed: int = 0) -> np.ndarray:
    """uint8 ``[F, H, W, 3]``: one textured frame repeated (a tripod shot of a still scene)."""
    return np.repeat(moving_pattern(1, height, width, speed=0.0, hue=1, seed=seed), n_frames, axis=0)

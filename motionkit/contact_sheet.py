"""Contact sheets: clips laid out frame by frame, one row per clip, in one PNG to look at a run at a glance.

Frames are upscaled with nearest-neighbour (every pixel a ``scale`` x ``scale`` block, so nothing is
smoothed away), rows carry their label on the left and a header names the frame indices.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from motionkit.errors import MotionkitError
from motionkit.utils.atomic import atomic_path
from motionkit.video_io import to_uint8_frame

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE, _FONT_THICKNESS = 0.45, 1
_TEXT = (235, 235, 235)
_BACKGROUND = (24, 24, 24)


def _row_frames(label: str, frames: Any) -> list[np.ndarray]:
    if isinstance(frames, Image.Image) or (hasattr(frames, "ndim") and frames.ndim == 3):
        frames = [frames]  # a single image is a row of one frame
    converted = [to_uint8_frame(frame) for frame in frames]
    if not converted:
        raise MotionkitError(f"contact sheet row {label!r} has no frames; give at least one")
    return converted


def _text_size(text: str) -> tuple[int, int]:
    (width, height), baseline = cv2.getTextSize(text, _FONT, _FONT_SCALE, _FONT_THICKNESS)
    return width, height + baseline


def contact_sheet(rows: Sequence[tuple[str, Any]], *, scale: int = 4, gap: int = 4) -> np.ndarray:
    """uint8 RGB sheet of ``rows``, each ``(label, frames)``: a clip ``[F, H, W, 3]`` (or list of frames, uint8
    or float in [0, 1]) or a single image. Every frame must have the same size; shorter rows leave their
    right end empty. ``scale`` is the nearest-neighbour upscale factor, ``gap`` the pixels between cells."""
    if not rows:
        raise MotionkitError("a contact sheet needs at least one row of frames")
    if not isinstance(scale, int) or scale < 1:
        raise MotionkitError(f"contact sheet scale must be a whole number >= 1, got {scale!r}")
    clips = [(str(label), _row_frames(str(label), frames)) for label, frames in rows]
    height, width = clips[0][1][0].shape[:2]
    for label, frames in clips:
        for index, frame in enumerate(frames):
            if frame.shape[:2] != (height, width):
                raise MotionkitError(
                    f"contact sheet row {label!r} frame {index} is {frame.shape[1]}x{frame.shape[0]}, not "
                    f"{width}x{height} like the first row; fit every clip to one size first"
                )
    cell_w, cell_h = width * scale, height * scale
    columns = max(len(frames) for _, frames in clips)
    label_w = max(_text_size(label)[0] for label, _ in clips) + 2 * gap
    header_h = _text_size("0")[1] + 2 * gap
    sheet = np.empty((header_h + len(clips) * (cell_h + gap), label_w + columns * (cell_w + gap), 3), np.uint8)
    sheet[:] = _BACKGROUND
    for column in range(columns):
        left = label_w + column * (cell_w + gap)
        text = str(column)
        cv2.putText(sheet, text, (left + (cell_w - _text_size(text)[0]) // 2, header_h - gap - 2),
                    _FONT, _FONT_SCALE, _TEXT, _FONT_THICKNESS, cv2.LINE_AA)
    for row, (label, frames) in enumerate(clips):
        top = header_h + row * (cell_h + gap)
        text_h = _text_size(label)[1]
        cv2.putText(sheet, label, (gap, top + (cell_h + text_h) // 2), _FONT, _FONT_SCALE, _TEXT,
                    _FONT_THICKNESS, cv2.LINE_AA)
        for column, frame in enumerate(frames):
            left = label_w + column * (cell_w + gap)
            sheet[top : top + cell_h, left : left + cell_w] = np.repeat(np.repeat(frame, scale, 0), scale, 1)
    return sheet


def write_contact_sheet(
    path: str | os.PathLike[str], rows: Sequence[tuple[str, Any]], *, scale: int = 4, gap: int = 4
) -> Path:
    """Write ``contact_sheet(rows)`` to ``path`` (a ``.png``) atomically; return the path."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise MotionkitError(f"{target}: a contact sheet is a PNG; give a path ending in .png")
    sheet = contact_sheet(rows, scale=scale, gap=gap)
    with atomic_path(target) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    return target

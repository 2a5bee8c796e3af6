"""Contact sheets: clips laid out frame by frame, one row per clip, in one PNG to look at a run at a glance.

Frames are upscaled with nearest-neighbour (every pixel a ``scale`` x ``scale`` block, so nothing is
smoothed away), rows carry their label on the left (and, when given, a note under it: a verdict, a setting),
a header names the frame indices, and an optional footer line closes the sheet.
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


def _text_size(text: str, size: float = 1.0) -> tuple[int, int]:
    (width, height), baseline = cv2.getTextSize(text, _FONT, _FONT_SCALE * size, round(_FONT_THICKNESS * size))
    return width, height + baseline


def _text_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _put(sheet: np.ndarray, text: str, left: int, baseline: int, size: float) -> None:
    cv2.putText(sheet, text, (left, baseline), _FONT, _FONT_SCALE * size, _TEXT, round(_FONT_THICKNESS * size), cv2.LINE_AA)


def contact_sheet(
    rows: Sequence[tuple[str, Any] | tuple[str, Any, str]], *, scale: int = 4, gap: int = 4, footer: str | None = None
) -> np.ndarray:
    """uint8 RGB sheet of ``rows``, each ``(label, frames)`` or ``(label, frames, note)``: a clip ``[F, H, W, 3]``
    (or list of frames, uint8 or float in [0, 1]) or a single image, and a note (lines split on newlines)
    written under the label. Every frame must have the same size; shorter rows leave their right end empty.
    ``scale`` is the nearest-neighbour upscale factor, ``gap`` the pixels between cells; ``footer`` (lines
    split on newlines) is written under the last row."""
    if not rows:
        raise MotionkitError("a contact sheet needs at least one row of frames")
    if not isinstance(scale, int) or scale < 1:
        raise MotionkitError(f"contact sheet scale must be a whole number >= 1, got {scale!r}")
    clips, notes = [], []
    for row in rows:
        if len(row) not in (2, 3):
            raise MotionkitError(f"contact sheet row {row[:1]!r} must be (label, frames) or (label, frames, note)")
        clips.append((str(row[0]), _row_frames(str(row[0]), row[1])))
        notes.append(_text_lines(str(row[2])) if len(row) == 3 and row[2] is not None else [])
    height, width = clips[0][1][0].shape[:2]
    for label, frames in clips:
        for index, frame in enumerate(frames):
            if frame.shape[:2] != (height, width):
                raise MotionkitError(
                    f"contact sheet row {label!r} frame {index} is {frame.shape[1]}x{frame.shape[0]}, not "
                    f"{width}x{height} like the first row; fit every clip to one size first"
                )
    cell_w, cell_h = width * scale, height * scale
    # Text grows with large cells, so that it stays legible when the sheet is viewed shrunk to a screen.
    size = max(1.0, min(cell_w, cell_h) / 128)
    line_h = _text_size("0Ag", size)[1] + gap
    footer_lines = _text_lines(footer or "")
    columns = max(len(frames) for _, frames in clips)
    label_w = max(_text_size(text, size)[0] for (label, _), note in zip(clips, notes) for text in [label, *note]) + 2 * gap
    # A row is as tall as its frames, or as its label and note lines when those need more.
    row_hs = [max(cell_h, (1 + len(note)) * line_h) for note in notes]
    header_h = _text_size("0", size)[1] + 2 * gap
    footer_h = len(footer_lines) * line_h + gap if footer_lines else 0
    sheet_w = max([label_w + columns * (cell_w + gap), *(_text_size(t, size)[0] + 2 * gap for t in footer_lines)])
    sheet = np.empty((header_h + sum(h + gap for h in row_hs) + footer_h, sheet_w, 3), np.uint8)
    sheet[:] = _BACKGROUND
    for column in range(columns):
        left = label_w + column * (cell_w + gap)
        text = str(column)
        _put(sheet, text, left + (cell_w - _text_size(text, size)[0]) // 2, header_h - gap - 2, size)
    top = header_h
    for (label, frames), note, row_h in zip(clips, notes, row_hs):
        lines = [label, *note]
        first = top + (row_h - len(lines) * line_h) // 2 + line_h - gap  # the block of lines, centred on the row
        for index, text in enumerate(lines):
            _put(sheet, text, gap, first + index * line_h, size)
        for column, frame in enumerate(frames):
            left = label_w + column * (cell_w + gap)
            sheet[top : top + cell_h, left : left + cell_w] = np.repeat(np.repeat(frame, scale, 0), scale, 1)
        top += row_h + gap
    for index, text in enumerate(footer_lines):
        _put(sheet, text, gap, top + (index + 1) * line_h - gap, size)
    return sheet


def write_contact_sheet(
    path: str | os.PathLike[str],
    rows: Sequence[tuple[str, Any] | tuple[str, Any, str]],
    *,
    scale: int = 4,
    gap: int = 4,
    footer: str | None = None,
) -> Path:
    """Write ``contact_sheet(rows, footer=footer)`` to ``path`` (a ``.png``) atomically; return the path."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise MotionkitError(f"{target}: a contact sheet is a PNG; give a path ending in .png")
    sheet = contact_sheet(rows, scale=scale, gap=gap, footer=footer)
    with atomic_path(target) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    return target

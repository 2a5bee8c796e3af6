"""Contact sheets: the layout's size, nearest-neighbour cells holding the frames exactly, labels, atomic PNG."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from motionkit.contact_sheet import contact_sheet, write_contact_sheet
from motionkit.errors import MotionkitError


def clip(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, 6, 5, 3), dtype=np.uint8)


def test_sheet_size_and_cells():
    video, other = clip(3), clip(2, seed=1)
    sheet = contact_sheet([("video", video), ("other", other)], scale=4, gap=2)
    # label column and header strip first, then 3 columns of 5*4 px and 2 rows of 6*4 px, each with its gap.
    header = sheet.shape[0] - 2 * (6 * 4 + 2)
    label = sheet.shape[1] - 3 * (5 * 4 + 2)
    assert header > 0 and label > 0
    for row, frames in enumerate((video, other)):
        for column, frame in enumerate(frames):
            top, left = header + row * (6 * 4 + 2), label + column * (5 * 4 + 2)
            cell = sheet[top : top + 24, left : left + 20]
            np.testing.assert_array_equal(cell, np.kron(frame, np.ones((4, 4, 1), np.uint8)))  # nearest neighbour
    # The shorter row leaves its last cell as background; labels draw light pixels in the label column.
    empty = sheet[header + 26 : header + 50, label + 44 : label + 64]
    assert len(np.unique(empty.reshape(-1, 3), axis=0)) == 1
    assert sheet[header : header + 24, :label].max() > 200


def test_single_image_rows_and_float_frames():
    image = clip(1)[0]
    sheet = contact_sheet([("image", image), ("float", clip(2).astype(np.float32) / 255.0)], scale=1)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3


def test_write_is_a_png_and_atomic(tmp_path):
    target = write_contact_sheet(tmp_path / "sheet.png", [("video", clip(4))], scale=2)
    with Image.open(target) as opened:
        assert opened.format == "PNG"
        np.testing.assert_array_equal(np.asarray(opened.convert("RGB")), contact_sheet([("video", clip(4))], scale=2))
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]  # no temporary left behind


def test_refuses_bad_input(tmp_path):
    with pytest.raises(MotionkitError, match="not 5x6 like the first row"):
        contact_sheet([("a", clip(2)), ("b", np.zeros((2, 8, 8, 3), np.uint8))])
    with pytest.raises(MotionkitError, match="ending in .png"):
        write_contact_sheet(tmp_path / "sheet.jpg", [("a", clip(2))])
    with pytest.raises(MotionkitError, match="at least one row"):
        contact_sheet([])
    with pytest.raises(MotionkitError, match="scale"):
        contact_sheet([("a", clip(2))], scale=0)
    assert not any(tmp_path.iterdir())

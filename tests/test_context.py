"""Context windows: coverage, wrap-around, dilation, weights and fusion."""

import pytest
import torch

from motionkit import MotionkitError
from motionkit.pipeline.context import ContextWindows, check_frames_fit, fuse_windows


@pytest.mark.parametrize("num_frames", [8, 9, 20, 33])
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("stride", [1, 3])
def test_windows_cover_every_frame_within_the_length(num_frames, loop, stride):
    context = ContextWindows(8, overlap=3, stride=stride, loop=loop)
    windows = context.windows(num_frames)
    assert set().union(*map(set, windows)) == set(range(num_frames))
    assert all(0 < len(w) <= 8 and len(set(w)) == len(w) for w in windows)


def test_uniform_windows_end_on_the_last_frame_and_loop_windows_wrap():
    assert ContextWindows(8, 4).windows(20)[-1] == list(range(12, 20))
    assert ContextWindows(8, 4, loop=True).windows(20)[-1] == [16, 17, 18, 19, 0, 1, 2, 3]
    assert ContextWindows(8, 4).windows(6) == [list(range(6))]


def test_dilated_windows_space_frames_apart():
    windows = ContextWindows(4, 0, stride=2).windows(8)
    assert [0, 2, 4, 6] in windows and [1, 3, 5, 7] in windows


def test_pyramid_weights_peak_in_the_middle():
    assert ContextWindows(6).weights(6).tolist() == [1, 2, 3, 3, 2, 1]
    assert ContextWindows(6, weighting="flat").weights(6).tolist() == [1] * 6


def test_fusion_of_a_frame_wise_function_is_exact():
    x = torch.randn(1, 2, 20, 3, 3)
    fused = fuse_windows(lambda frames: x[:, :, frames] * 2, 20, ContextWindows(8, 4, stride=2, loop=True))
    torch.testing.assert_close(fused, x * 2)


def test_bad_settings_are_refused():
    with pytest.raises(MotionkitError, match="context_overlap"):
        ContextWindows(4, overlap=4)
    with pytest.raises(MotionkitError, match="position table of 16"):
        check_frames_fit(24, 16, ContextWindows(24))
    with pytest.raises(MotionkitError, match="context_length"):
        check_frames_fit(24, 16, None)
    check_frames_fit(40, 16, ContextWindows(16))

import json
import math

import cv2
import numpy as np
import pytest

from motionkit.cli import main
from motionkit.metrics import (
    MetricInputError,
    dynamic_degree,
    evaluate_video,
    first_frame_fidelity,
    mean_abs_frame_difference,
    motion_score,
    psnr,
    ssim,
    temporal_flicker,
    warping_error,
)
from motionkit.video_io import write_video


def texture(size: int = 96, seed: int = 0) -> np.ndarray:
    # Blurred noise: rich, smooth texture that Farneback tracks reliably.
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 2)
    return ((image - image.min()) / (image.max() - image.min()) * 255).astype(np.uint8)


def shifted(shift: int, frames: int = 10) -> np.ndarray:
    # Cropping the centre of a rolled texture hides the wrap-around seam.
    base = texture()
    return np.stack([np.roll(base, shift * t, axis=1) for t in range(frames)])[:, 16:80, 16:80]


def test_static_video():
    clip = shifted(0)
    assert temporal_flicker(clip) == 1.0
    assert mean_abs_frame_difference(clip) == 0.0
    assert warping_error(clip) == pytest.approx(0.0, abs=1e-6)  # Farneback leaves ~1e-3 px of noise
    assert motion_score(clip) == pytest.approx(0.0, abs=0.01)
    assert dynamic_degree(clip) is False


@pytest.mark.parametrize("shift", [1, 3])
def test_known_shift_gives_flow_of_that_size(shift):
    clip = shifted(shift)
    assert motion_score(clip) == pytest.approx(shift, rel=0.1)
    # a rigid shift is perfectly explained by the flow
    assert warping_error(clip) < 1e-3


def test_dynamic_degree_threshold():
    # VBench threshold at 64 px is 6 * 64 / 256 = 1.5 px
    assert dynamic_degree(shifted(1)) is False
    assert dynamic_degree(shifted(3)) is True
    assert dynamic_degree(shifted(1), threshold=0.5) is True


def test_fps_resampling_scales_motion():
    # At 8 fps, sampling at 2 fps keeps every 4th frame: 4x the motion per pair.
    clip = shifted(1, frames=13)
    assert motion_score(clip, fps=8) == pytest.approx(4, rel=0.15)


def test_flicker_worse_than_smooth_motion():
    smooth = shifted(1)
    base = smooth[0].astype(int)
    flashing = np.stack([np.clip(base + (40 if t % 2 else 0), 0, 255) for t in range(10)]).astype(np.uint8)
    assert temporal_flicker(flashing) < temporal_flicker(smooth) - 0.05
    assert warping_error(flashing) > 10 * warping_error(smooth)


def test_psnr_and_ssim_known_values():
    image = texture(64)
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == 1.0
    # +-4 on alternate rows gives MSE exactly 16; clip first so nothing saturates
    base = np.clip(image.astype(int), 4, 251)
    noisy = base.copy()
    noisy[::2] += 4
    noisy[1::2] -= 4
    assert psnr(base, noisy) == pytest.approx(10 * math.log10(255**2 / 16))
    assert 0 < ssim(base, noisy) < 1
    assert ssim(base, 255 - base) < 0.5


def test_first_frame_fidelity_resizes_condition():
    clip = shifted(2)
    big = cv2.resize(clip[0], (128, 128), interpolation=cv2.INTER_CUBIC)
    result = first_frame_fidelity(clip, big)
    assert result["psnr"] > 30 and result["ssim"] > 0.95
    assert first_frame_fidelity(clip, clip[0])["psnr"] == math.inf


def test_bad_inputs():
    clip = shifted(1)
    with pytest.raises(MetricInputError, match="at least 2 frames"):
        motion_score(clip[:1])
    with pytest.raises(MetricInputError, match="uint8"):
        temporal_flicker(clip.astype(np.float32))
    with pytest.raises(MetricInputError, match=r"\[F, H, W, 3\]"):
        warping_error(clip[..., 0])
    with pytest.raises(MetricInputError, match="differ in shape"):
        psnr(clip[0], clip[0, :32])


def test_evaluate_video_keys():
    clip = shifted(2)
    report = evaluate_video(clip, clip[0])
    assert report["frames"] == 10 and report["dynamic_degree"] is True
    assert report["motion_score"] == pytest.approx(2, rel=0.1)
    assert report["first_frame_ssim"] == 1.0
    assert "first_frame_psnr" not in evaluate_video(clip)


def test_cli_eval_table_and_json(tmp_path, capsys):
    clip = shifted(2, frames=8)
    video = write_video(clip, tmp_path / "clip.mp4")
    write_video(clip[:1], tmp_path / "cond/")
    assert main(["eval", str(video), "--image", str(tmp_path / "cond" / "00000.png")]) == 0
    out = capsys.readouterr().out
    for name in ("temporal_flicker", "warping_error", "motion_score", "dynamic_degree", "first_frame_ssim"):
        assert name in out
    assert main(["eval", str(video), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 8 and report["motion_score"] == pytest.approx(2, rel=0.2)


def test_cli_eval_errors(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.mp4")]) == 2
    err = capsys.readouterr().err
    assert "missing.mp4" in err and err.count("\n") == 1 and "Traceback" not in err
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 100)
    assert main(["eval", str(tmp_path / "junk.mp4")]) == 2
    err = capsys.readouterr().err
    assert "junk.mp4" in err and err.count("\n") == 1

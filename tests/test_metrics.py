import json
import math

import cv2
import numpy as np
import pytest

from motionkit.cli import main
from motionkit.metrics import (
    MetricInputError,
    adherence_report,
    camera_pan,
    camera_zoom,
    colour_delta_e,
    colour_histogram_distance,
    dynamic_degree,
    edge_alignment,
    image_edges,
    layout_kept,
    evaluate_video,
    first_frame_fidelity,
    first_frame_jump,
    fit_image,
    fit_video,
    frame_psnr,
    frame_ssim,
    histogram_distance,
    mean_abs_frame_difference,
    mean_lab,
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


def zoomed(rate: float, frames: int = 8) -> np.ndarray:
    # Frame t is the texture magnified rate**t about its centre, cropped away from the borders.
    base, centre = texture(128, seed=3), (63.5, 63.5)
    views = [cv2.warpAffine(base, cv2.getRotationMatrix2D(centre, 0.0, rate**t), (128, 128)) for t in range(frames)]
    return np.stack(views)[:, 32:96, 32:96]


@pytest.mark.parametrize("rate", [1.03, 0.97])
def test_camera_zoom_measures_magnification(rate):
    assert camera_zoom(zoomed(rate)) == pytest.approx(rate**7, rel=0.03)


def test_camera_zoom_ignores_pans_and_stillness():
    assert camera_zoom(shifted(2)) == pytest.approx(1.0, abs=0.01)
    assert camera_zoom(shifted(0)) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("seed", [0, 3, 6])
def test_camera_zoom_orders_the_worlds_camera_moves(seed):
    # The same landscape filmed four ways: its waves and clouds bias every reading alike, the camera orders them.
    from motionkit.data.world.common import camera_for
    from motionkit.data.world.landscape import _replace_camera, random_landscape_spec
    from motionkit.data.world.scene import render_clip

    spec = random_landscape_spec(np.random.default_rng(seed), frames=15)
    zooms = {move: camera_zoom(render_clip(_replace_camera(spec, camera_for(move)))[::2])
             for move in ("zoom in", "static", "zoom out")}
    assert zooms["zoom in"] > zooms["static"] * 1.05 and zooms["zoom out"] < zooms["static"] / 1.05, zooms


def _square_clip(corner: int, frames: int = 3) -> tuple[np.ndarray, np.ndarray]:
    # A red square on green at ``corner`` in every frame, and its boundary as the world draws edges (2 px each side).
    video = np.zeros((frames, 32, 32, 3), np.uint8)
    video[..., 1] = 160
    video[:, corner:corner + 10, corner:corner + 10] = (200, 30, 30)
    outline = np.zeros((32, 32), np.uint8)
    cv2.rectangle(outline, (corner, corner), (corner + 9, corner + 9), 255, 2)
    return video, np.repeat(outline[None], frames, axis=0)


def test_edge_alignment_reads_where_the_edges_are():
    video, edges = _square_clip(4)
    _, elsewhere = _square_clip(18)
    assert edge_alignment(video, edges) > 4.0  # the frame's gradient lies on the map's boundary
    assert edge_alignment(video, elsewhere) < 0.5  # ... and not on another square's
    assert edge_alignment(np.full_like(video, 90), edges) == 1.0  # a flat frame has no layout
    assert edge_alignment(video, edges[..., None]) == edge_alignment(video, edges)  # [F, H, W, 1] maps are read too
    # Colour alone makes an edge: the same square in a colour of the ground's brightness still reads.
    same_luma = video.copy()
    same_luma[:, 4:14, 4:14] = (255, 100, 160)
    assert edge_alignment(same_luma, edges) > 4.0


@pytest.mark.parametrize("seed", [0, 3])
def test_edge_alignment_tells_a_world_clips_own_maps_from_anothers(seed):
    from motionkit.data.world.scene import random_spec, render_clip

    rng = np.random.default_rng(seed)
    (frames, maps), (_, other) = (render_clip(random_spec(rng, frames=5), maps=True) for _ in range(2))
    assert edge_alignment(frames, maps["edges"]) > 2.0 * edge_alignment(frames, other["edges"])


def test_edge_alignment_refuses_bad_maps():
    video, edges = _square_clip(4)
    with pytest.raises(MetricInputError, match="do not match the frames") as info:
        edge_alignment(video, edges[:2])
    assert "\n" not in str(info.value)
    with pytest.raises(MetricInputError, match="no edge map has an edge"):
        edge_alignment(video, np.zeros_like(edges))


def test_image_edges_mark_a_square_s_outline():
    video, outline = _square_clip(4, frames=1)
    edges = image_edges(video[0])
    assert edges.shape == (32, 32) and edges.dtype == np.uint8 and set(np.unique(edges)) == {0, 255}
    on = edges > 127
    assert on[outline[0] > 127].mean() > 0.5 and not on[20:, 20:].any()  # on the square's outline, not far from it
    assert not image_edges(np.full((16, 16, 3), 90, np.uint8)).any()


def test_layout_kept_reads_how_much_of_frame_0_s_layout_the_later_frames_keep():
    video, _ = _square_clip(4, frames=4)
    image = video[0]
    assert layout_kept(video, image) == pytest.approx(1.0)  # every frame as frame 0
    moved = video.copy()
    moved[1:] = _square_clip(18, frames=3)[0]  # the square went elsewhere after frame 0
    assert layout_kept(moved, image) < 0.1
    flat = video.copy()
    flat[1:] = 90  # a flat picture after frame 0: edges nowhere, a share of 0
    assert layout_kept(flat, image) == pytest.approx(0.0)
    # A larger image of the same picture is fitted to the frames first.
    assert layout_kept(video, cv2.resize(image, (64, 64), interpolation=cv2.INTER_NEAREST)) > 0.9


def test_layout_kept_refuses_an_image_without_edges_and_a_frame_0_without_them():
    video, _ = _square_clip(4, frames=3)
    with pytest.raises(MetricInputError, match="no edges to hold a layout by"):
        layout_kept(video, np.full((32, 32, 3), 90, np.uint8))
    flat_first = video.copy()
    flat_first[0] = 90
    with pytest.raises(MetricInputError, match="frame 0 does not draw the image's edges"):
        layout_kept(flat_first, video[0])


@pytest.mark.parametrize("shift", [2, -3])
def test_camera_pan_measures_the_travel(shift):
    # The picture moving right by `shift` px a frame is the camera panning left as far: 9 pairs.
    assert camera_pan(shifted(shift)) == pytest.approx(-9 * shift, abs=0.5)
    assert camera_pan(shifted(0)) == pytest.approx(0.0, abs=1e-3)
    assert abs(camera_pan(zoomed(1.03))) < 0.5  # a zoom about the centre is no pan


@pytest.mark.parametrize("seed", [0, 2])
def test_camera_pan_orders_the_worlds_pans(seed):
    from motionkit.data.world.common import camera_for
    from motionkit.data.world.landscape import _replace_camera, random_landscape_spec
    from motionkit.data.world.scene import render_clip

    spec = random_landscape_spec(np.random.default_rng(seed), frames=15)
    pans = {move: camera_pan(render_clip(_replace_camera(spec, camera_for(move, 0.03)))[::2])
            for move in ("pan left", "static", "pan right")}
    assert pans["pan left"] < pans["static"] - 3.0 and pans["pan right"] > pans["static"] + 3.0, pans


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


# ------------------------------------------------------------------------------------------- adherence


def srgb_to_lab(rgb) -> np.ndarray:
    """CIE L*a*b* (D65) of one sRGB colour in 0..255, from the textbook formulas (not OpenCV)."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]) @ linear
    t = xyz / np.array([0.950456, 1.0, 1.088754])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def flat(rgb, frames: int = 1, size: int = 16) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (frames, size, size, 3)).copy()


def test_identical_frames_adhere_perfectly():
    clip = shifted(0, frames=5)
    report = adherence_report(clip, clip[0], clip)
    for key in ("psnr_image", "psnr_frame0", "psnr_reference"):
        assert report[key] == math.inf and report["per_frame"][key] == [math.inf] * 5
    for key in ("ssim_image", "ssim_frame0", "ssim_reference"):
        assert report[key] == 1.0
    assert report["delta_e_image"] == 0.0 and report["hist_image"] == 0.0
    assert report["jump_ratio"] == 1.0  # a still clip: no step at all, so no jump either
    assert report["frames"] == 5 and report["compared_frames"] == 5


def test_lab_is_real_cie_lab():
    # OpenCV's 8-bit Lab is scaled (L * 255/100, a and b + 128); the float path must give the real values,
    # to within its interpolated gamma curve (about 0.1, far below a just-noticeable difference of 2.3).
    for rgb in [(255, 255, 255), (0, 0, 0), (220, 40, 40), (40, 80, 210), (128, 128, 128)]:
        np.testing.assert_allclose(mean_lab(flat(rgb)[0]), srgb_to_lab(rgb), atol=0.15)
    assert mean_lab(flat((255, 255, 255))[0]) == pytest.approx([100.0, 0.0, 0.0], abs=1e-3)


@pytest.mark.parametrize(("a", "b"), [((128, 128, 128), (100, 100, 100)), ((220, 40, 40), (240, 140, 30))])
def test_colour_shift_gives_the_hand_computed_delta_e(a, b):
    expected = float(np.linalg.norm(srgb_to_lab(a) - srgb_to_lab(b)))
    if a[0] == a[1] == a[2]:
        # Greys have a* = b* = 0, so delta E is the L* difference: 53.585 - 42.374 by hand.
        assert expected == pytest.approx(53.585 - 42.374, abs=0.01)
    video = np.concatenate([flat(a), flat(b), flat(b)])
    assert colour_delta_e(video, flat(a)[0]) == pytest.approx([0.0, expected, expected], abs=0.15)
    assert adherence_report(video, flat(a)[0])["delta_e_image"] == pytest.approx(expected, abs=0.15)


def test_histogram_distance_range():
    image = texture(32)
    assert histogram_distance(image, image) == 0.0
    # Pure black and pure white share no Lab bin: Bhattacharyya distance 1.
    assert histogram_distance(flat((0, 0, 0))[0], flat((255, 255, 255))[0]) == pytest.approx(1.0)
    # Half the pixels recoloured: strictly between.
    half = image.copy()
    half[:16] = 0
    assert 0.0 < histogram_distance(image, half) < 1.0
    assert colour_histogram_distance(np.stack([image, half]), image) == [0.0, histogram_distance(half, image)]


def test_jump_ratio_of_a_hard_cut_after_frame_0():
    # Steps: 100 (the cut), then 2, 2, 2: the jump is 50 times the typical step.
    cut = np.concatenate([flat(0), flat(100), flat(102), flat(104), flat(106)])
    assert first_frame_jump(cut) == pytest.approx(50.0)
    steady = np.concatenate([flat(10 * k) for k in range(6)])
    assert first_frame_jump(steady) == pytest.approx(1.0)
    # Edge cases: no later step to compare with; a cut into a frozen clip; a still clip.
    assert math.isnan(first_frame_jump(cut[:2]))
    assert first_frame_jump(np.concatenate([flat(0), flat(50), flat(50), flat(50)])) == math.inf
    assert first_frame_jump(flat(7, frames=4)) == 1.0


def test_reference_psnr_over_the_common_frames():
    truth = np.clip(shifted(1, frames=6).astype(int), 4, 251)
    video = truth.copy()
    video[:, ::2] += 4  # +-4 on alternate rows: MSE exactly 16 in every frame
    video[:, 1::2] -= 4
    truth, video = truth.astype(np.uint8), video.astype(np.uint8)
    expected = 10 * math.log10(255**2 / 16)
    report = adherence_report(video, reference=truth[:4])  # the reference is shorter: 4 common frames
    assert report["reference_frames"] == 4 and report["compared_frames"] == 4
    assert report["per_frame"]["psnr_reference"] == pytest.approx([expected] * 4)
    assert report["psnr_reference"] == pytest.approx(expected)
    assert frame_psnr(video, truth) == pytest.approx([expected] * 6)
    assert frame_ssim(truth, truth) == [1.0] * 6
    assert "psnr_image" not in report


def test_adherence_means_skip_frame_0():
    image = texture(32)
    video = np.stack([image] + [np.clip(image.astype(int) + 8 * k, 0, 255).astype(np.uint8) for k in range(1, 5)])
    report = adherence_report(video, image)
    per_frame = report["per_frame"]
    assert per_frame["psnr_image"][0] == math.inf and len(per_frame["psnr_image"]) == 5
    assert report["psnr_image"] == pytest.approx(np.mean(per_frame["psnr_image"][1:]))
    assert report["delta_e_image"] == pytest.approx(np.mean(per_frame["delta_e_image"][1:]))
    assert per_frame["psnr_image"][1] > per_frame["psnr_image"][4]  # drifting away frame by frame


def test_fit_image_matches_the_pipeline():
    from diffusers.image_processor import VaeImageProcessor

    from motionkit.pipeline.image_input import prepare_image

    wide = texture(96)[:48]  # 96x48: covering 32x32 keeps the centre 48x48 of it, scaled down
    fitted = fit_image(wide, 32, 32)
    seen = prepare_image(wide, 32, 32, VaeImageProcessor(vae_scale_factor=8))[0]
    as_uint8 = ((seen.permute(1, 2, 0).numpy() + 1.0) * 127.5).round().astype(np.uint8)
    assert fitted.shape == (32, 32, 3)
    np.testing.assert_array_equal(fitted, as_uint8)
    assert fit_video(np.stack([wide, wide]), 32, 32).shape == (2, 32, 32, 3)
    same = texture(32)
    assert fit_image(same, 32, 32) is same or np.array_equal(fit_image(same, 32, 32), same)


def test_adherence_bad_inputs():
    clip = shifted(1, frames=4)
    with pytest.raises(MetricInputError, match="reference clip has 1 frame"):
        adherence_report(clip, reference=clip[:1])
    with pytest.raises(MetricInputError, match="3 frames and the video 4"):
        frame_psnr(clip, clip[:3])
    with pytest.raises(MetricInputError, match="differ in shape"):
        frame_ssim(clip, clip[0, :32])


def test_cli_eval_image_and_reference(tmp_path, capsys):
    clip = shifted(2, frames=8)
    video = write_video(clip, tmp_path / "clip.png")  # a folder of PNG frames: lossless
    reference = write_video(clip[:6], tmp_path / "truth.png")
    # A larger, non-square image: fitted to the video as the pipeline fits images.
    wide = cv2.resize(clip[0], (128, 64), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "cond.png"), cv2.cvtColor(wide, cv2.COLOR_RGB2BGR))
    args = ["eval", str(video), "--image", str(tmp_path / "cond.png"), "--reference", str(reference)]
    sheet = tmp_path / "sheet.png"
    assert main([*args, "--contact-sheet", str(sheet)]) == 0
    out = capsys.readouterr().out
    for name in ("psnr_image", "ssim_image", "psnr_frame0", "delta_e_image", "hist_image", "jump_ratio", "psnr_reference"):
        assert f"  {name} " in out
    assert "fitted to 64x64" in out and "compared over the first 6" in out and "per frame" in out
    assert sheet.is_file()

    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["compared_frames"] == 6 and report["reference_frames"] == 6
    assert report["psnr_reference"] is None  # identical frames: PSNR inf, which JSON writes as null
    assert report["per_frame"]["psnr_reference"] == [None] * 6
    assert len(report["per_frame"]["psnr_image"]) == 8 and report["jump_ratio"] == pytest.approx(1.0, abs=0.2)
    assert report["delta_e_image"] > 0 and 0 <= report["hist_image"] <= 1
    assert any("compared over the first 6" in note for note in report["notes"])


@pytest.mark.parametrize("flag", ["--image", "--reference"])
def test_cli_eval_refuses_unreadable_inputs(flag, tmp_path, capsys):
    video = write_video(shifted(1, frames=4), tmp_path / "clip.mp4")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert main(["eval", str(video), flag, str(tmp_path / "junk.png")]) == 2
    err = capsys.readouterr().err
    assert "junk.png" in err and err.count("\n") == 1 and "Traceback" not in err

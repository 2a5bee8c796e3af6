"""Video metrics that need no network weights: numpy and OpenCV only, so they run offline and on CPU.

All functions take uint8 RGB frames ``[F, H, W, 3]`` (what ``motionkit.video_io.read_video`` returns).
Optical flow is OpenCV Farnebäck everywhere. Benchmarks such as VBench and EvalCrafter use RAFT for the
flow-based metrics, so the numbers here are proxies: compare them with each other, not with leaderboards.

| function            | meaning                                                    | better  |
|---------------------|------------------------------------------------------------|---------|
| temporal_flicker    | VBench: (255 - mean abs frame difference) / 255            | higher  |
| warping_error       | masked squared error after warping t+1 onto t by flow      | lower   |
| motion_score        | mean flow magnitude, pixels per frame pair (SVD filtering) | context |
| dynamic_degree      | VBench rule on the largest flows: does the clip move?      | context |
| camera_zoom         | view magnification from frame 0 to the last (scale search) | context |
| camera_pan          | horizontal camera travel, px, frame 0 to the last (flow)   | context |
| edge_alignment      | gradient on a scene's edge maps over its mean (1 = none)   | higher  |
| layout_kept         | edge alignment of frames 1..N-1 on an image's edges / f0's | higher  |
| first_frame_fidelity| PSNR / SSIM of frame 0 against the conditioning image      | higher  |
| frame_psnr/ssim     | per frame, against an image (each frame) or a clip (paired)| higher  |
| colour_delta_e      | CIE76 delta E between mean CIE L*a*b* colours, per frame   | lower   |
| colour_histogram_distance | Bhattacharyya distance of L*a*b* histograms, 0..1    | lower   |
| first_frame_jump    | |f1 - f0| over the median later step: 1 = no jump          | ~1      |
| adherence_report    | all of the above against the image, frame 0 and a reference| -       |

``fit_image`` / ``fit_video`` bring an image or clip of another size to the frame size exactly as the
pipeline prepares a conditioning image (resize to cover, centre crop); they alone use diffusers, lazily.
"""

from __future__ import annotations

import math
import os
from typing import Any

import cv2
import numpy as np
from PIL import Image

from motionkit.errors import MotionkitError

# OpenCV's documented example parameters; winsize 15 is robust to noise at the small sizes used here.
FARNEBACK_PARAMS: dict[str, Any] = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}
# Flow is computed on frames whose short side is at most this (downscaled, never upscaled) and the vectors
# are rescaled to input pixels, so large frames cost the same as a 256 px clip.
FLOW_MAX_SHORT_SIDE = 256
# SVD averages each flow map down to a 16 px short side before taking magnitudes (paper, App. C).
MOTION_MAP_SHORT_SIDE = 16
# SSIM constants from Wang et al. 2004.
_SSIM_SIGMA, _SSIM_WINDOW, _SSIM_K1, _SSIM_K2 = 1.5, 11, 0.01, 0.03


class MetricInputError(MotionkitError, ValueError):
    """Frames or images that a metric cannot be computed on."""


# ----------------------------------------------------------------------------------------------- inputs


def _as_video(frames: Any, *, min_frames: int = 2) -> np.ndarray:
    video = np.stack(frames) if isinstance(frames, (list, tuple)) and frames else np.asarray(frames)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise MetricInputError(
            f"frames must be uint8 RGB [F, H, W, 3], got shape {video.shape}; load them with motionkit.video_io.read_video"
        )
    if video.dtype != np.uint8:
        raise MetricInputError(
            f"frames must be uint8 (0..255), got {video.dtype}; convert with motionkit.video_io.to_uint8_frame"
        )
    if video.shape[0] < min_frames:
        raise MetricInputError(f"need at least {min_frames} frames, got {video.shape[0]}; pass a longer clip")
    if video.shape[1] < 2 or video.shape[2] < 2:
        raise MetricInputError(f"frames are too small ({video.shape[2]}x{video.shape[1]}); need at least 2x2 pixels")
    return video


def _as_image(image: Any) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as opened:
                image = opened.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(f"{image}: no such image; check the path") from None
        except OSError as err:
            raise MetricInputError(f"{image}: not a readable image ({err})") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise MetricInputError(f"an image must be uint8 RGB [H, W, 3], got {array.dtype} {array.shape}")
    return array


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise MetricInputError(f"images differ in shape {a.shape} vs {b.shape}; resize one to the other first")


# ---------------------------------------------------------------------------------------------- flicker


def mean_abs_frame_difference(frames: Any) -> float:
    """Raw MAFD: mean over consecutive pairs of the mean |x_{t+1} - x_t| over pixels and channels (0..255)."""
    video = _as_video(frames).astype(np.int16)
    per_pair = np.abs(np.diff(video, axis=0)).reshape(video.shape[0] - 1, -1).mean(axis=1)
    return float(per_pair.mean())


def temporal_flicker(frames: Any) -> float:
    """VBench temporal flickering score ``(255 - MAFD) / 255``: 1.0 for a static clip, lower is more flicker.

    VBench applies it to static-scene prompts; on a moving clip it also drops with the amount of motion,
    so read it next to ``motion_score``.
    """
    return (255.0 - mean_abs_frame_difference(frames)) / 255.0


# ------------------------------------------------------------------------------------------------- flow


def farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow ``[H, W, 2]`` (dx, dy in pixels) that takes frame ``a`` to frame ``b`` (uint8 RGB or gray)."""
    gray_a = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) if a.ndim == 3 else a
    gray_b = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY) if b.ndim == 3 else b
    return cv2.calcOpticalFlowFarneback(gray_a, gray_b, None, **FARNEBACK_PARAMS)


def _resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = short_side / min(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _pair_flows(video: np.ndarray) -> list[np.ndarray]:
    """Forward flow of each consecutive pair, at input-pixel scale (computed at <= FLOW_MAX_SHORT_SIDE)."""
    height, width = video.shape[1:3]
    grays = [_resize_short_side(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), FLOW_MAX_SHORT_SIDE) for frame in video]
    scale = np.array([width / grays[0].shape[1], height / grays[0].shape[0]], dtype=np.float32)
    return [farneback_flow(grays[i], grays[i + 1]) * scale for i in range(len(grays) - 1)]


def _resample(video: np.ndarray, fps: float | None, target_fps: float) -> np.ndarray:
    # Keep every k-th frame to approach target_fps, but never fewer than two frames.
    if not fps or fps <= target_fps:
        return video
    step = max(1, round(fps / target_fps))
    return video[::step] if len(video[::step]) >= 2 else video[[0, -1]]


def _motion_from_flows(flows: list[np.ndarray]) -> float:
    magnitudes = []
    for flow in flows:
        small = _resize_short_side(flow, MOTION_MAP_SHORT_SIDE)
        magnitudes.append(np.linalg.norm(small, axis=-1).mean())
    return float(np.mean(magnitudes))


def motion_score(frames: Any, *, fps: float | None = None, sample_fps: float = 2.0) -> float:
    """Mean Farnebäck flow magnitude, in pixels of the input frame per frame pair (SVD's motion filter).

    Flow is computed on frames downscaled to a short side of at most 256 px, each flow map is then
    area-averaged to a 16 px short side (as SVD does), and magnitudes are averaged over space and pairs.
    With ``fps`` given, frames are first subsampled to about ``sample_fps`` (SVD uses 2 fps), so the unit
    becomes pixels per 1/sample_fps seconds; without it consecutive frames are used. A static clip scores 0.
    """
    video = _resample(_as_video(frames), fps, sample_fps)
    return _motion_from_flows(_pair_flows(video))


# Per-pair magnifications camera_zoom tries: a world zoom is 1.5-2.5 % a rendered frame, 3-5 % a video frame.
ZOOM_STEPS = np.linspace(0.94, 1.06, 49)


def _pair_zoom(a: np.ndarray, b: np.ndarray) -> float:
    # The magnification of a about its centre that, after the best shift (phase correlation), matches b best
    # inside a margin of a fifth of the frame (where no border pixels reach).
    height, width = a.shape[:2]
    centre, margin = ((width - 1) / 2, (height - 1) / 2), min(height, width) // 5
    gray_a, gray_b = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in (a, b))
    inner = (slice(margin, height - margin), slice(margin, width - margin))
    best_error, best_zoom = math.inf, 1.0
    for zoom in ZOOM_STEPS:
        warp = cv2.getRotationMatrix2D(centre, 0.0, float(zoom))
        scaled = cv2.warpAffine(gray_a, warp, (width, height), borderMode=cv2.BORDER_REFLECT)
        (shift_x, shift_y), _ = cv2.phaseCorrelate(scaled, gray_b)
        warp[:, 2] += (shift_x, shift_y)
        moved = cv2.warpAffine(gray_a, warp, (width, height), borderMode=cv2.BORDER_REFLECT)
        error = float(((moved - gray_b)[inner] ** 2).mean())
        if error < best_error:
            best_error, best_zoom = error, float(zoom)
    return best_zoom


def camera_zoom(frames: Any) -> float:
    """How much the view is magnified from frame 0 to the last frame: 1 for none, above 1 zooming in.

    For each consecutive pair, the magnification of the first frame about its centre (in ``ZOOM_STEPS``),
    plus the shift that suits it best, that matches the second best; the pairs' factors are multiplied. A
    pan is a shift and does not count on a flat picture (a pan with parallax, near ground moving faster than
    the sky, does). Things that move by themselves (waves, clouds) bias it by several per cent either way,
    so compare videos of the same scene with each other, not with 1.
    """
    video = _as_video(frames)
    zoom = 1.0
    for index in range(len(video) - 1):
        zoom *= _pair_zoom(video[index], video[index + 1])
    return zoom


def camera_pan(frames: Any) -> float:
    """How far the camera travels sideways from frame 0 to the last frame, in pixels: positive panning right
    (the picture moves left), negative panning left, 0 for a still camera.

    For each consecutive pair, the median horizontal Farnebäck flow, negated and summed. The median follows
    the layer that fills most of the frame, where a mean would be pulled by moving objects and by a pan's
    near layers, which parallax moves faster. Waves, clouds and things that move by themselves bias it, so
    compare videos of one scene."""
    return -float(sum(np.median(flow[..., 0]) for flow in _pair_flows(_as_video(frames))))


def _as_edge_maps(edges: Any, video: np.ndarray) -> np.ndarray:
    maps = np.asarray(edges)
    if maps.ndim == 4 and maps.shape[-1] in (1, 3):
        maps = maps[..., 0]
    if maps.shape != video.shape[:3]:
        raise MetricInputError(
            f"edge maps of shape {tuple(maps.shape)} do not match the frames' {tuple(video.shape[:3])}: give one [H, W] map per frame"
        )
    return maps > 127


def edge_alignment(frames: Any, edges: Any) -> float:
    """How much stronger each frame's colour gradient is on ``edges`` (one uint8 map per frame, above 127 on a
    scene's boundaries, as the world's ``render_clip(..., maps=True)["edges"]``) than on the frame as a
    whole: the mean over frames of mean(|gradient| on the edges) / mean(|gradient|). About 1 when the frame's
    edges lie anywhere (exactly 1 for a flat frame), higher the more of them sit on the map's: a layout check
    that does not care which colours were drawn, e.g. whether a ControlNet drew the scene its depth or edge
    video describes. Frames whose map has no edge are left out."""
    video = _as_video(frames, min_frames=1)
    maps = _as_edge_maps(edges, video)
    ratios = []
    for frame, on_edge in zip(video, maps):
        if not on_edge.any():
            continue
        rgb = frame.astype(np.float32)
        gradient = np.sqrt(sum(cv2.Sobel(rgb, cv2.CV_32F, dx, dy, ksize=3) ** 2 for dx, dy in ((1, 0), (0, 1))).sum(axis=-1))
        mean = float(gradient.mean())
        ratios.append(float(gradient[on_edge].mean()) / mean if mean > 0 else 1.0)
    if not ratios:
        raise MetricInputError("no edge map has an edge: give maps that mark the scene's boundaries above 127")
    return float(np.mean(ratios))


def image_edges(image: Any, low: float = 60.0, high: float = 150.0) -> np.ndarray:
    """uint8 ``[H, W]`` edge map of an RGB image (255 on its edges, lines about 2 px wide, as the world's maps):
    Canny with thresholds ``low`` / ``high`` on each colour channel (a boundary between two colours of one
    brightness is an edge too), joined and dilated by one pixel."""
    rgb = _as_image(image)
    edges = np.max([cv2.Canny(np.ascontiguousarray(rgb[..., c]), low, high) for c in range(3)], axis=0)
    return cv2.dilate(edges, np.ones((2, 2), np.uint8))


def layout_kept(frames: Any, image: Any) -> float:
    """How much of the image's layout frames 1..N-1 keep, against frame 0: ``edge_alignment`` of frames 1..N-1
    on the image's own edges (``image_edges``) above 1, as a share of frame 0's above 1. 1 when every frame
    draws its edges where frame 0 does, 0 when they lie anywhere, below 0 when they avoid them. Frame 0 is the
    reference (in image-to-video the image through the VAE), so the VAE's blur does not count against the rest."""
    video = _as_video(frames)
    edges = image_edges(fit_image(image, video.shape[1], video.shape[2]))
    if not (edges > 127).any():
        raise MetricInputError("the image has no edges to hold a layout by: give an image with some structure")
    first = edge_alignment(video[:1], edges[None])
    rest = edge_alignment(video[1:], np.repeat(edges[None], len(video) - 1, axis=0))
    if first <= 1.0:
        raise MetricInputError("frame 0 does not draw the image's edges: it is no reference for the later frames")
    return float((rest - 1.0) / (first - 1.0))


def _dynamic_from_flows(
    flows: list[np.ndarray], num_frames: int, size: tuple[int, int], threshold: float | None
) -> bool:
    if threshold is None:
        threshold = 6.0 * min(size) / 256.0
    peaks = []
    for flow in flows:
        magnitude = np.linalg.norm(flow, axis=-1).ravel()
        top = max(1, int(magnitude.size * 0.05))
        peaks.append(np.partition(magnitude, -top)[-top:].mean())
    needed = max(1, round(4 * num_frames / 16))
    return int(np.sum(np.asarray(peaks) > threshold)) >= needed


def dynamic_degree(frames: Any, *, threshold: float | None = None, fps: float | None = None) -> bool:
    """VBench dynamic-degree rule with Farnebäck flow: is this clip dynamic?

    Per consecutive pair, r = mean of the largest 5% of flow magnitudes (input pixels). The clip is
    dynamic when at least round(4 * F / 16) pairs (minimum 1) have r > ``threshold``, which defaults to
    VBench's 6 * min(H, W) / 256. With ``fps`` given, frames are first subsampled to about 8 fps as VBench does.
    VBench's score for a model is the fraction of its clips for which this returns True.
    """
    video = _resample(_as_video(frames), fps, 8.0)
    return _dynamic_from_flows(_pair_flows(video), len(video), video.shape[1:3], threshold)


# -------------------------------------------------------------------------------------------- warping


def _warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``image`` at (x + flow): bring the next frame back onto the current one. Also returns the
    mask of samples that stayed inside the frame."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x, map_y = grid_x + flow[..., 0], grid_y + flow[..., 1]
    warped = cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    return warped, inside


def warping_error(frames: Any) -> float:
    """Flow warping error (EvalCrafter, after Lai et al. 2018) with Farnebäck flow instead of RAFT.

    Frames are halved in size and scaled to [0, 1]. For each pair, forward flow f (t -> t+1) and backward
    flow b (t+1 -> t) are estimated; frame t+1 is warped onto t along f. A pixel counts only when the flows
    agree, |f + b(x + f)|^2 <= 0.01 (|f|^2 + |b(x + f)|^2) + 0.5, and its sample lies inside the frame,
    which drops occlusions. The pair error is sum(M * (warp(x_{t+1}) - x_t)^2) / sum(M) over pixels and RGB
    channels, and the result is the mean over pairs: 0 for a static or perfectly flow-consistent clip.
    Returns nan when every pixel of every pair is occluded.
    """
    video = _as_video(frames)
    height, width = video.shape[1:3]
    half = (max(1, width // 2), max(1, height // 2))
    small = [cv2.resize(frame, half, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0 for frame in video]
    grays = [cv2.cvtColor((frame * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY) for frame in small]
    errors = []
    for t in range(len(small) - 1):
        forward = farneback_flow(grays[t], grays[t + 1])
        backward = farneback_flow(grays[t + 1], grays[t])
        warped, inside = _warp(small[t + 1], forward)
        backward_at, _ = _warp(backward, forward)
        mismatch = np.sum((forward + backward_at) ** 2, axis=-1)
        tolerance = 0.01 * (np.sum(forward**2, axis=-1) + np.sum(backward_at**2, axis=-1)) + 0.5
        mask = (mismatch <= tolerance) & inside
        if mask.any():
            squared = np.sum((warped - small[t]) ** 2, axis=-1)  # summed over channels, averaged below
            errors.append(float(squared[mask].sum() / (mask.sum() * 3)))
    return float(np.mean(errors)) if errors else math.nan


# ------------------------------------------------------------------------------------- image fidelity


def mse(a: Any, b: Any) -> float:
    """Mean squared error over all pixels and channels, on the 0..255 scale (AIGCBench reports this)."""
    a, b = np.asarray(a), np.asarray(b)
    _same_shape(a, b)
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def psnr(a: Any, b: Any, *, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE). Identical inputs give ``inf``."""
    error = mse(a, b)
    if error == 0:
        return math.inf
    return float(10.0 * math.log10(data_range**2 / error))


def _luma(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float64)
    if image.ndim == 2:
        return image
    return image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114  # ITU-R BT.601


def ssim(a: Any, b: Any, *, data_range: float = 255.0) -> float:
    """Structural similarity (Wang et al. 2004) on luminance (BT.601 Y) with an 11x11 Gaussian window,
    sigma 1.5, K1 = 0.01, K2 = 0.03. The mean skips a 5 px border where the window leaves the image.
    RGB or gray inputs of equal shape; identical inputs give 1.0."""
    a, b = np.asarray(a), np.asarray(b)
    _same_shape(a, b)
    x, y = _luma(a), _luma(b)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (_SSIM_WINDOW, _SSIM_WINDOW), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    pad = _SSIM_WINDOW // 2
    if min(ssim_map.shape) > 2 * pad:
        ssim_map = ssim_map[pad:-pad, pad:-pad]
    return float(ssim_map.mean())


def first_frame_fidelity(frames: Any, cond_image: Any) -> dict[str, float]:
    """PSNR, SSIM and MSE of frame 0 against the conditioning image (a path, PIL image or uint8 array).

    The image is resized (no crop) to the frame size: area filter when shrinking, bicubic when enlarging.
    """
    video = _as_video(frames, min_frames=1)
    cond = _as_image(cond_image)
    height, width = video.shape[1:3]
    if cond.shape[:2] != (height, width):
        shrink = cond.shape[0] * cond.shape[1] > height * width
        cond = cv2.resize(cond, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    first = video[0]
    return {"psnr": psnr(first, cond), "ssim": ssim(first, cond), "mse": mse(first, cond)}


# ------------------------------------------------------------------------------------------- adherence

# Lab histogram: bins per channel over L* 0..100 and a*, b* -128..128 (the upper edges are nudged up because
# calcHist excludes them, and pure white has L* = 100 exactly). An odd number of a*, b* bins puts the neutral
# axis (a* = b* = 0) mid-bin, so greys and whites do not flip between two bins on a rounding error.
LAB_HISTOGRAM_BINS = (8, 7, 7)
_LAB_RANGES = [0.0, 100.001, -128.0, 128.001, -128.0, 128.001]


def fit_image(image: Any, height: int, width: int) -> np.ndarray:
    """uint8 RGB ``[height, width, 3]``: ``image`` (path, PIL image or uint8 array) resized to cover the size
    and centre-cropped, exactly as the pipeline prepares a conditioning image (diffusers' VaeImageProcessor,
    ``resize_mode="crop"``, Lanczos). An image of that size already is returned unchanged."""
    array = _as_image(image)
    if array.shape[:2] == (height, width):
        return array
    from diffusers.image_processor import VaeImageProcessor

    fitted = VaeImageProcessor().resize(Image.fromarray(array), height, width, resize_mode="crop")
    return np.asarray(fitted.convert("RGB"))


def fit_video(frames: Any, height: int, width: int) -> np.ndarray:
    """Every frame of a clip through ``fit_image``: uint8 ``[F, height, width, 3]``."""
    video = _as_video(frames, min_frames=1)
    if video.shape[1:3] == (height, width):
        return video
    return np.stack([fit_image(frame, height, width) for frame in video])


def _targets(video: np.ndarray, target: Any) -> np.ndarray:
    """``target`` as one frame per video frame: an image is repeated, a clip must have as many frames."""
    target = np.asarray(target)
    if target.ndim == 3:
        _same_shape(video[0], target)
        target = np.broadcast_to(target, video.shape)
    if target.shape[0] != video.shape[0]:
        raise MetricInputError(
            f"the target clip has {target.shape[0]} frames and the video {video.shape[0]}; compare the common frames"
        )
    _same_shape(video, target)
    return target


def frame_psnr(frames: Any, target: Any) -> list[float]:
    """PSNR in dB of every frame against ``target``: one uint8 image (the same for every frame) or a clip of
    as many frames (frame k against frame k). Sizes must match (see ``fit_image``); identical gives ``inf``."""
    video = _as_video(frames, min_frames=1)
    return [psnr(frame, other) for frame, other in zip(video, _targets(video, target))]


def frame_ssim(frames: Any, target: Any) -> list[float]:
    """SSIM (as ``ssim``) of every frame against ``target``, an image or a clip of as many frames."""
    video = _as_video(frames, min_frames=1)
    return [ssim(frame, other) for frame, other in zip(video, _targets(video, target))]


def to_lab(image: Any) -> np.ndarray:
    """CIE L*a*b* (D65) of a uint8 sRGB image as float32 ``[H, W, 3]``: L* in 0..100, a* and b* about -128..127.

    OpenCV's 8-bit Lab output is rescaled (L* x 255/100, a* and b* + 128), so the image goes in as float32
    RGB in [0, 1], for which ``cv2.COLOR_RGB2Lab`` undoes the sRGB gamma and returns real L*a*b* (within
    about 0.1 of the textbook formulas: OpenCV interpolates the gamma curve)."""
    rgb = _as_image(image).astype(np.float32) / 255.0
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)


def mean_lab(image: Any) -> np.ndarray:
    """The mean L*, a*, b* over an image's pixels (float64 ``[3]``)."""
    return to_lab(image).reshape(-1, 3).mean(axis=0, dtype=np.float64)


def colour_delta_e(frames: Any, image: Any) -> list[float]:
    """Per frame, CIE76 delta E (Euclidean distance in L*a*b*) between the frame's mean colour and the image's.

    0 for the same mean colour; about 2.3 is a just-noticeable difference. Colours are averaged in Lab;
    sizes may differ.
    """
    video = _as_video(frames, min_frames=1)
    target = mean_lab(image)
    return [float(np.linalg.norm(mean_lab(frame) - target)) for frame in video]


def lab_histogram(image: Any) -> np.ndarray:
    """Joint L*a*b* histogram (``LAB_HISTOGRAM_BINS``), float32, normalised to sum 1."""
    lab = to_lab(image)
    hist = cv2.calcHist([lab], [0, 1, 2], None, list(LAB_HISTOGRAM_BINS), _LAB_RANGES)
    return hist / max(float(hist.sum()), 1.0)


def histogram_distance(a: Any, b: Any) -> float:
    """Bhattacharyya distance (``cv2.HISTCMP_BHATTACHARYYA``) of two images' Lab histograms.

    Range 0..1: 0 for the same colour distribution, 1 when the two share no bin. Images may differ in size."""
    distance = cv2.compareHist(lab_histogram(a), lab_histogram(b), cv2.HISTCMP_BHATTACHARYYA)
    return float(min(max(distance, 0.0), 1.0))  # float rounding can step just outside


def colour_histogram_distance(frames: Any, image: Any) -> list[float]:
    """Per frame, ``histogram_distance`` of the frame to ``image`` (0 = same colours, 1 = none shared)."""
    video = _as_video(frames, min_frames=1)
    reference = lab_histogram(image)
    distances = [cv2.compareHist(lab_histogram(frame), reference, cv2.HISTCMP_BHATTACHARYYA) for frame in video]
    return [float(min(max(d, 0.0), 1.0)) for d in distances]


def first_frame_jump(frames: Any) -> float:
    """How much bigger the step from frame 0 to frame 1 is than the clip's typical step.

    ``|f1 - f0|`` (mean absolute difference over pixels and channels, 0..255) divided by the median of
    ``|fk - fk-1|`` over k >= 2. About 1 for steady motion; large when frame 1 cuts away from frame 0 (an
    anchored first frame followed by a different picture). Edge cases: fewer than 3 frames have no later
    step to compare with and give ``nan``; a zero median gives 1.0 when the jump is zero too (a still clip),
    else ``inf``.
    """
    video = _as_video(frames, min_frames=1).astype(np.int16)
    if len(video) < 3:
        return math.nan
    steps = np.abs(np.diff(video, axis=0)).reshape(len(video) - 1, -1).mean(axis=1)
    jump, typical = float(steps[0]), float(np.median(steps[1:]))
    if typical == 0:
        return 1.0 if jump == 0 else math.inf
    return jump / typical


def _mean_after_first(values: list[float]) -> float:
    # Frame 0 is excluded: image-to-video anchors it, so it says nothing about whether the image holds.
    return float(np.mean(values[1:])) if len(values) > 1 else math.nan


def adherence_report(frames: Any, image: Any = None, reference: Any = None) -> dict[str, Any]:
    """How well a video holds its conditioning image: means over frames 1..N-1, and every per-frame value.

    Keys (means over frames 1..N-1; the per-frame lists, frame 0 included, are under ``"per_frame"``):
    ``psnr_frame0`` / ``ssim_frame0`` against the video's own frame 0 and ``jump_ratio``
    (``first_frame_jump``) always; with ``image`` (path, PIL image or uint8 array, fitted to the frame size as
    the pipeline does), ``psnr_image``, ``ssim_image``, ``delta_e_image`` (``colour_delta_e``) and
    ``hist_image`` (``colour_histogram_distance``); with ``reference`` (a ground-truth clip, fitted the same
    way), ``psnr_reference`` / ``ssim_reference`` frame k against frame k over the frames both have
    (``reference_frames`` says how many the reference has, ``compared_frames`` how many were compared).
    """
    video = _as_video(frames)
    height, width = video.shape[1:3]
    per_frame: dict[str, list[float]] = {
        "psnr_frame0": frame_psnr(video, video[0]),
        "ssim_frame0": frame_ssim(video, video[0]),
    }
    report: dict[str, Any] = {"frames": int(video.shape[0])}
    if image is not None:
        cond = fit_image(image, height, width)
        per_frame.update(
            psnr_image=frame_psnr(video, cond),
            ssim_image=frame_ssim(video, cond),
            delta_e_image=colour_delta_e(video, cond),
            hist_image=colour_histogram_distance(video, cond),
        )
    if reference is not None:
        truth = fit_video(reference, height, width)
        common = min(len(truth), len(video))
        if common < 2:
            raise MetricInputError(
                f"the reference clip has {len(truth)} frame(s); frames 1..N-1 need at least 2 to compare with"
            )
        per_frame.update(
            psnr_reference=frame_psnr(video[:common], truth[:common]),
            ssim_reference=frame_ssim(video[:common], truth[:common]),
        )
        report.update(reference_frames=int(len(truth)), compared_frames=int(common))
    report.update({name: _mean_after_first(values) for name, values in per_frame.items()})
    report["jump_ratio"] = first_frame_jump(video)
    report["per_frame"] = per_frame
    return report


def source_faithfulness(frames: Any, source: Any) -> dict[str, Any]:
    """How faithful a video-to-video output is to its source clip (fitted to the frame size as ``fit_video``).

    ``psnr_source``: mean PSNR of frame k against source frame k over every frame both have (frame 0
    included: video-to-video anchors no frame); ``warping_error_source``: the source's own warping error
    over those frames, and ``warping_ratio``: the output's over the source's (1 = as steady as the source).
    Per-frame PSNRs go under ``"per_frame"["psnr_source"]``.
    """
    video = _as_video(frames, min_frames=1)
    truth = fit_video(source, *video.shape[1:3])
    common = min(len(truth), len(video))
    values = frame_psnr(video[:common], truth[:common])
    finite = [v for v in values if math.isfinite(v)]
    report: dict[str, Any] = {
        "source_frames": int(len(truth)),
        "compared_source_frames": int(common),
        "psnr_source": float(np.mean(finite)) if finite else float("inf"),
        "per_frame": {"psnr_source": values},
    }
    if common >= 2:
        own, theirs = warping_error(video[:common]), warping_error(truth[:common])
        report["warping_error_source"] = theirs
        report["warping_ratio"] = own / theirs if theirs > 0 else float("nan")
    return report


# ---------------------------------------------------------------------------------------------- report


def evaluate_video(frames: Any, cond_image: Any = None, *, fps: float | None = None) -> dict[str, Any]:
    """Every metric above in one dict. ``fps`` (when known) makes motion_score and dynamic_degree
    resample to 2 and 8 fps as SVD and VBench do; without it they use consecutive frames."""
    video = _as_video(frames)
    height, width = video.shape[1:3]
    consecutive = _pair_flows(video) if fps is None else None
    motion_video = _resample(video, fps, 2.0)
    dynamic_video = _resample(video, fps, 8.0)
    motion_flows = consecutive if consecutive is not None else _pair_flows(motion_video)
    dynamic_flows = consecutive if consecutive is not None else _pair_flows(dynamic_video)
    mafd = mean_abs_frame_difference(video)
    report: dict[str, Any] = {
        "frames": int(video.shape[0]),
        "height": int(height),
        "width": int(width),
        "temporal_flicker": (255.0 - mafd) / 255.0,
        "mean_abs_frame_diff": mafd,
        "warping_error": warping_error(video),
        "motion_score": _motion_from_flows(motion_flows),
        "dynamic_degree": _dynamic_from_flows(dynamic_flows, len(dynamic_video), (height, width), None),
    }
    if cond_image is not None:
        fidelity = first_frame_fidelity(video, cond_image)
        report.update({f"first_frame_{name}": value for name, value in fidelity.items()})
    return report

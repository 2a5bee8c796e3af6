"""Decode training clips from video files with PyAV.

A clip is a sorted set of frame indices of one video. Decoding seeks to the keyframe before the first
index, decodes forward and stops after the last one, so a 16-frame clip from an hour-long file costs a
GOP or two, not the whole file. Frames are scaled by FFmpeg (swscale) while they are converted to RGB,
so full-resolution RGB frames never reach numpy.

Frame index ``i`` is the frame presented at ``start_time + i / fps`` (the convention PySceneDetect's
PyAV backend uses too), so indices found by curation and indices decoded here agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO, Literal, overload

import av
import numpy as np

from motionkit.errors import FormatError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_BUCKETS",
    "closest_bucket",
    "decode_clip",
    "decode_time_range",
    "indices_by_fps",
    "indices_by_stride",
    "resize_dims",
    "to_training_tensor",
]

# Decoder failures PyAV reports: its own FFmpeg errors plus the OS/value errors it raises on bad input.
DECODE_ERRORS: tuple[type[BaseException], ...] = (av.error.FFmpegError, OSError, ValueError, EOFError, IndexError)

# (height, width) buckets around 512x512 area, multiples of 64, for multi-aspect training.
DEFAULT_BUCKETS: tuple[tuple[int, int], ...] = (
    (512, 512),
    (448, 576),
    (576, 448),
    (384, 640),
    (640, 384),
    (320, 768),
    (768, 320),
)


# --------------------------------------------------------------------------- frame sampling


def _randint(low: int, high: int, generator: torch.Generator | np.random.Generator | None) -> int:
    """Uniform integer in [low, high]."""
    if high <= low:
        return low
    if isinstance(generator, np.random.Generator):
        return int(generator.integers(low, high + 1))
    import torch

    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def indices_by_stride(
    num_frames: int,
    n_frames: int,
    stride: int,
    *,
    start: int = 0,
    random_start: bool = True,
    generator: torch.Generator | np.random.Generator | None = None,
) -> list[int]:
    """``n_frames`` indices ``stride`` apart inside ``[start, start + num_frames)``.

    As in AnimateDiff's WebVid loader, the clip spans ``(n_frames - 1) * stride + 1`` frames at a random
    start; a range shorter than that is covered by evenly spaced (repeated) indices instead of failing,
    so short clips still train. ``random_start=False`` takes the centred window (validation, caching).
    """
    if num_frames < 1 or n_frames < 1 or stride < 1:
        raise ValueError(f"need num_frames, n_frames and stride >= 1, got {num_frames}, {n_frames}, {stride}")
    span = min(num_frames, (n_frames - 1) * stride + 1)
    slack = num_frames - span
    offset = _randint(0, slack, generator) if random_start else slack // 2
    first = start + offset
    return np.linspace(first, first + span - 1, n_frames).round().astype(int).tolist()


def indices_by_fps(
    num_frames: int,
    video_fps: float,
    n_frames: int,
    target_fps: float,
    *,
    start: int = 0,
    random_start: bool = True,
    generator: torch.Generator | np.random.Generator | None = None,
) -> list[int]:
    """``n_frames`` indices sampled at ``target_fps`` from a ``video_fps`` video, so clips from 24, 25 and
    60 fps sources show the same amount of motion per frame. Falls back to even spacing over a range too
    short for the request, like :func:`indices_by_stride`."""
    if video_fps <= 0 or target_fps <= 0:
        raise ValueError(f"fps must be positive, got video_fps={video_fps}, target_fps={target_fps}")
    if num_frames < 1 or n_frames < 1:
        raise ValueError(f"need num_frames and n_frames >= 1, got {num_frames}, {n_frames}")
    step = max(video_fps / target_fps, 1.0)
    span = min(num_frames, math.floor((n_frames - 1) * step) + 1)
    slack = num_frames - span
    offset = _randint(0, slack, generator) if random_start else slack // 2
    first = start + offset
    if span < math.floor((n_frames - 1) * step) + 1:
        return np.linspace(first, first + span - 1, n_frames).round().astype(int).tolist()
    return [first + math.floor(k * step + 1e-6) for k in range(n_frames)]


# --------------------------------------------------------------------------- geometry


def closest_bucket(width: int, height: int, buckets: Sequence[tuple[int, int]] = DEFAULT_BUCKETS) -> tuple[int, int]:
    """The ``(height, width)`` bucket whose aspect ratio is closest to ``width / height``.

    Ratios are compared on a log scale so 2:1 and 1:2 are equally far from 1:1.
    """
    if not buckets:
        raise ValueError("bucket list is empty")
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    target = math.log(width / height)
    return min(buckets, key=lambda hw: abs(math.log(hw[1] / hw[0]) - target))


def resize_dims(
    width: int, height: int, *, size: tuple[int, int] | None = None, short_side: int | None = None
) -> tuple[int, int]:
    """Scaled ``(width, height)`` before cropping: just covering ``size`` = (H, W) when given, else with
    the shorter side set to ``short_side``; unchanged when neither is given."""
    if size is not None:
        out_h, out_w = size
        scale = max(out_h / height, out_w / width)
        return max(out_w, round(width * scale)), max(out_h, round(height * scale))
    if short_side is not None:
        scale = short_side / min(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))
    return width, height


def _center_crop(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out_h, out_w = size
    h, w = frame.shape[:2]
    top, left = (h - out_h) // 2, (w - out_w) // 2
    return frame[top : top + out_h, left : left + out_w]


def to_training_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[F, H, W, 3]`` frames to float ``[F, 3, H, W]`` in [-1, 1] (the VAE's input range)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


# --------------------------------------------------------------------------- decoding


def _frame_rate(stream: av.video.stream.VideoStream, path: str) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise FormatError(f"{path}: the video stream has no frame rate; re-encode it with a fixed rate (ffmpeg -r 24)")
    return float(rate)


@overload
def decode_clip(
    path: str | BinaryIO,
    indices: Sequence[int],
    *,
    size: tuple[int, int] | None = ...,
    short_side: int | None = ...,
    flip: bool = ...,
    output: Literal["numpy"] = ...,
) -> np.ndarray: ...


@overload
def decode_clip(
    path: str | BinaryIO,
    indices: Sequence[int],
    *,
    size: tuple[int, int] | None = ...,
    short_side: int | None = ...,
    flip: bool = ...,
    output: Literal["tensor"],
) -> torch.Tensor: ...


def decode_clip(
    path: str | BinaryIO,
    indices: Sequence[int],
    *,
    size: tuple[int, int] | None = None,
    short_side: int | None = None,
    flip: bool = False,
    output: Literal["numpy", "tensor"] = "numpy",
) -> np.ndarray | torch.Tensor:
    """Decode the frames at ``indices`` (any order, repeats allowed) of the video at ``path`` (a file
    path, or a seekable binary file object such as a shard member held in memory).

    ``size`` = (H, W) resizes to cover and centre-crops; otherwise ``short_side`` only resizes. ``flip``
    mirrors horizontally. Returns uint8 ``[F, H, W, 3]`` (``output="numpy"``) or float ``[F, 3, H, W]`` in
    [-1, 1] (``output="tensor"``), frames in the order of ``indices``. Raises :class:`FormatError` when
    the file cannot be decoded or ends before the last index.
    """
    if len(indices) == 0:
        raise ValueError("indices is empty; ask for at least one frame")
    if min(indices) < 0:
        raise ValueError(f"frame indices must be >= 0, got {min(indices)}")
    wanted = sorted(set(int(i) for i in indices))
    try:
        source = path if hasattr(path, "read") else str(path)
        frames = _decode_sorted(source, wanted, size=size, short_side=short_side)
    except FormatError:
        raise
    except DECODE_ERRORS as err:
        raise FormatError(f"{path}: cannot decode video ({err}); re-encode it or drop it from the data") from err
    clip = np.stack([frames[i] for i in indices])
    if flip:
        clip = clip[:, :, ::-1]
    if output == "tensor":
        return to_training_tensor(clip)
    return np.ascontiguousarray(clip)


def _decode_sorted(
    path: str | BinaryIO, wanted: list[int], *, size: tuple[int, int] | None, short_side: int | None
) -> dict[int, np.ndarray]:
    with av.open(path) as container:
        if not container.streams.video:
            raise FormatError(f"{path}: no video stream; pass a video file")
        stream = container.streams.video[0]
        fps = _frame_rate(stream, path)
        time_base = stream.time_base
        start_pts = stream.start_time
        ctx = stream.codec_context
        out_w, out_h = resize_dims(ctx.width, ctx.height, size=size, short_side=short_side)

        first = wanted[0]
        # Seek only when it can skip something; a seek lands on the keyframe at or before the target.
        seeked = False
        if first > 0 and time_base and start_pts is not None:
            target = start_pts + int((first - 0.5) / fps / time_base)
            container.seek(max(target, start_pts), stream=stream, backward=True, any_frame=False)
            seeked = True

        result = _collect(container, stream, wanted, fps, start_pts, out_w, out_h, size)
        if seeked and wanted[0] not in result:
            # Some demuxers seek past the target (bad index, open GOP): decode from the start instead.
            container.seek(start_pts or 0, stream=stream, backward=True, any_frame=False)
            result = _collect(container, stream, wanted, fps, start_pts, out_w, out_h, size)
        missing = [i for i in wanted if i not in result]
        if missing:
            decoded = max(result, default=-1) + 1
            raise FormatError(
                f"{path}: video ends after about {decoded} frames but frame {missing[0]} was asked for;"
                " re-probe it or rebuild the manifest"
            )
        return result


def _collect(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    wanted: list[int],
    fps: float,
    start_pts: int | None,
    out_w: int,
    out_h: int,
    size: tuple[int, int] | None,
) -> dict[int, np.ndarray]:
    wanted_set = set(wanted)
    last = wanted[-1]
    result: dict[int, np.ndarray] = {}
    time_base = stream.time_base
    origin = start_pts
    sequential = -1
    for frame in container.decode(stream):
        sequential += 1
        if frame.pts is not None and time_base:
            if origin is None:
                origin = frame.pts
            index = round(float((frame.pts - origin) * time_base) * fps)
        else:
            index = sequential  # no timestamps: only valid when decoding from the start (no seek)
        if index > last:
            break
        if index in wanted_set and index not in result:
            rgb = frame.to_ndarray(format="rgb24", width=out_w, height=out_h)
            result[index] = _center_crop(rgb, size) if size is not None else rgb
            if len(result) == len(wanted_set):
                break
    return result


def decode_time_range(
    path: str,
    start_s: float,
    end_s: float,
    *,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    short_side: int | None = None,
    flip: bool = False,
    output: Literal["numpy", "tensor"] = "numpy",
) -> np.ndarray | torch.Tensor:
    """Decode the frames presented in ``[start_s, end_s)``, resampled to ``fps`` when given (default:
    every frame of the source). Same resizing, flip and output options as :func:`decode_clip`."""
    if end_s <= start_s:
        raise ValueError(f"empty time range [{start_s}, {end_s}); end must be after start")
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise FormatError(f"{path}: no video stream; pass a video file")
        video_fps = _frame_rate(container.streams.video[0], str(path))
    first = math.ceil(start_s * video_fps - 1e-6)
    stop = math.ceil(end_s * video_fps - 1e-6)
    step = video_fps / fps if fps else 1.0
    indices = sorted({first + math.floor(k * step + 1e-6) for k in range(max(1, math.ceil((stop - first) / step)))})
    return decode_clip(path, indices, size=size, short_side=short_side, flip=flip, output=output)

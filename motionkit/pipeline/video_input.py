"""Source videos for video-to-video: reading a clip at the output's frame rate, and encoding it in chunks.

``read_source_video`` decodes only the frames it keeps: the source range ``start:end`` (source frame
indices, end exclusive) resampled from the source fps to the output fps, so a 24 fps clip written at
8 fps keeps every third frame and plays at its real speed (a lower source fps repeats frames). The
source fps is the file's own, or ``source_fps`` where the file carries none (a frame folder) or the
wrong one; without either every frame in the range is kept.

``encode_video`` turns frames into latents ``chunk_size`` frames at a time (resized to cover the output
size and centre-cropped, as conditioning images are), so a long clip never sits in memory as
full-size float pixels. It takes the VAE posterior's mode, as motionkit's image conditioning does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import PIL.Image
import torch
from diffusers.image_processor import VaeImageProcessor

from motionkit.errors import MotionkitError
from motionkit.pipeline.image_input import load_image


@dataclass
class SourceVideo:
    """Frames picked from a source clip, uint8 ``[F, H, W, 3]``, and how they were picked."""

    frames: np.ndarray
    path: str | None = None
    source_fps: float | None = None  # the source's frame rate (None: unknown, no resampling)
    fps: float | None = None  # the rate the frames were picked for
    start: int = 0  # the source range, end exclusive (None: to the last frame)
    end: int | None = None
    indices: tuple[int, ...] = ()  # the source frame of every kept frame

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def head(self, count: int) -> "SourceVideo":
        """The first ``count`` frames (all of them when there are fewer)."""
        return SourceVideo(
            self.frames[:count], self.path, self.source_fps, self.fps, self.start, self.end, self.indices[:count]
        )

    def to_dict(self) -> dict[str, Any]:
        """What a sidecar JSON records."""
        return {
            "path": self.path,
            "source_fps": self.source_fps,
            "fps": self.fps,
            "start": self.start,
            "end": self.end,
            "frames": len(self),
            "source_frames": [self.indices[0], self.indices[-1]] if self.indices else None,
        }


# A source video: a SourceVideo, a video file / frame folder path, a list of frames (paths, PIL images,
# [H, W, C] arrays, [C, H, W] tensors in [0, 1]), a [F, H, W, C] array or a [F, C, H, W] tensor in [0, 1].
VideoInput = Union[SourceVideo, str, Path, Sequence[Any], np.ndarray, torch.Tensor]
# Maps VAE-normalised pixels [N, 3, H, W] in [-1, 1] to latents [N, C, h, w] x scaling_factor.
EncodePixels = Callable[[torch.Tensor], torch.Tensor]


def parse_frame_range(text: str | None) -> tuple[int, int | None]:
    """``"A:B"`` (either side may be empty) as ``(start, end)`` source frame indices, end exclusive."""
    if text is None or str(text).strip() in ("", ":"):
        return 0, None
    parts = str(text).split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        end = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise MotionkitError(f"bad --video-frames value {text!r}: give START:END source frame indices, e.g. 0:48 or 24:") from None
    check_frame_range(start, end)
    return start, end


def check_frame_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end <= start):
        raise MotionkitError(
            f"the source frame range {start}:{'' if end is None else end} is empty or negative: "
            "give START:END with 0 <= START < END (END exclusive, empty for the last frame)"
        )


def resampled(frames: Iterator[Any], step: float, limit: int | None) -> Iterator[tuple[int, Any]]:
    """``(index, frame)`` for output frame k = source frame floor(k * step); a step below 1 repeats frames."""
    kept = 0
    for index, frame in enumerate(frames):
        # Every output frame whose time falls on this source frame (a small epsilon absorbs float error).
        while math.floor(kept * step + 1e-6) == index:
            yield index, frame
            kept += 1
            if limit is not None and kept >= limit:
                return


def read_source_video(
    path: str | Path,
    fps: float | None = None,
    source_fps: float | None = None,
    start: int = 0,
    end: int | None = None,
    max_frames: int | None = None,
) -> SourceVideo:
    """The frames of ``path`` (a video file or frame folder) in ``start:end`` picked for ``fps``.

    ``source_fps`` overrides the file's frame rate. ``max_frames`` stops decoding once that many frames are kept.
    """
    from motionkit.video_io import iter_video, probe_video

    check_frame_range(start, end)
    for name, value in (("fps", fps), ("source fps", source_fps)):
        if value is not None and not (math.isfinite(float(value)) and float(value) > 0):
            raise MotionkitError(f"the {name} of a source video must be a positive number, got {value}")
    if max_frames is not None and max_frames < 1:
        raise MotionkitError(f"max_frames must be at least 1, got {max_frames}")
    known_fps = source_fps if source_fps is not None else probe_video(path).fps
    step = float(known_fps) / float(fps) if known_fps and fps else 1.0

    def in_range() -> Iterator[np.ndarray]:
        for index, frame in enumerate(iter_video(path)):
            if end is not None and index >= end:
                return
            if index >= start:
                yield frame

    picked = list(resampled(in_range(), step, max_frames))
    if not picked:
        raise MotionkitError(
            f"{path}: no frames in the source range {start}:{'' if end is None else end}: "
            "check --video-frames against the clip's length (motionkit inspect shows it)"
        )
    shapes = {frame.shape for _, frame in picked}
    if len(shapes) > 1:
        raise MotionkitError(f"{path}: frames have different sizes {sorted(shapes)}; re-encode the clip to one size")
    return SourceVideo(
        frames=np.stack([frame for _, frame in picked]),
        path=str(path),
        source_fps=float(known_fps) if known_fps else None,
        fps=float(fps) if known_fps and fps else (float(known_fps) if known_fps else None),
        start=start,
        end=end,
        indices=tuple(start + index for index, _ in picked),
    )


def video_frames(video: VideoInput) -> list[PIL.Image.Image] | np.ndarray:
    """The frames of any ``VideoInput``: uint8 ``[F, H, W, 3]`` for decoded clips, else RGB images."""
    if isinstance(video, SourceVideo):
        return video.frames
    if isinstance(video, (str, Path)):
        return read_source_video(video).frames
    if isinstance(video, (np.ndarray, torch.Tensor)):
        if video.ndim != 4:
            raise MotionkitError(
                f"a video must be a list of frames, [F, H, W, C] array or [F, C, H, W] tensor, got shape {tuple(video.shape)}"
            )
        if isinstance(video, np.ndarray) and video.dtype == np.uint8 and video.shape[-1] == 3:
            return video
        video = list(video)
    if isinstance(video, PIL.Image.Image) or not isinstance(video, Sequence):
        raise MotionkitError(f"a video must be a list of frames, an array, a tensor or a path, got a {type(video).__name__}")
    if not video:
        raise MotionkitError("the video holds no frames: give at least one")
    return [load_image(frame) for frame in video]


def encode_video(
    frames: list[PIL.Image.Image] | np.ndarray,
    height: int,
    width: int,
    encode: EncodePixels,
    chunk_size: int = 16,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Latents ``[1, C, F, h, w]`` of ``frames``, encoded ``chunk_size`` frames at a time."""
    processor = VaeImageProcessor(do_convert_rgb=True)
    chunk_size = max(1, int(chunk_size))
    latents = []
    for begin in range(0, len(frames), chunk_size):
        chunk = frames[begin : begin + chunk_size]
        images = [PIL.Image.fromarray(f) for f in chunk] if isinstance(chunk, np.ndarray) else list(chunk)
        pixels = processor.preprocess(images, height=height, width=width, resize_mode="crop")
        latents.append(encode(pixels.to(device)))
    return torch.cat(latents).transpose(0, 1).unsqueeze(0)


def video_length(available: int, num_frames: int | None) -> int:
    """The frames a video-to-video call makes: every frame of the source, or the first ``num_frames``."""
    if num_frames is None:
        return available
    if num_frames > available:
        raise MotionkitError(
            f"num_frames {num_frames} is more than the source video's {available} frames: "
            f"lower num_frames (or --frames) to at most {available}, or give a longer range"
        )
    return num_frames


def source_video_from_settings(
    path: str | Path,
    fps: float,
    video_fps: float | None = None,
    video_frames: str | None = None,
    frames: int | None = None,
    limit: int | None = None,
) -> SourceVideo:
    """A run's source clip from its text settings (``--video``, ``--fps``, ``--video-fps``, ``--video-frames``,
    ``--frames``): at most ``frames`` frames when given, refused when the clip has fewer; ``limit`` stops
    decoding past a ceiling the caller refuses anyway."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such source video; give a video file or a folder of frames to --video")
    start, end = parse_frame_range(video_frames)
    clip = read_source_video(path, fps=fps, source_fps=video_fps, start=start, end=end, max_frames=frames or limit)
    if frames is not None and len(clip) < frames:
        raise MotionkitError(
            f"{path} gives {len(clip)} frames at {clip.fps or 'its own'} fps in the range {start}:{'' if end is None else end}, "
            f"fewer than --frames {frames}: lower --frames or widen --video-frames"
        )
    return clip

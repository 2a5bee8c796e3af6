"""Read and write videos: containers through PyAV (FFmpeg), animated GIF/WebP through PIL, and folders
of numbered PNG/JPEG frames.

Frames in motionkit are uint8 RGB arrays shaped ``[F, H, W, 3]``. Every writer is atomic (see
``motionkit.utils.atomic``): output appears complete or not at all.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from motionkit.errors import FormatError, MotionkitError
from motionkit.utils.atomic import atomic_path, atomic_write
from motionkit.utils.paths import missing_path_error

# Suffixes handled by PIL when reading: animated formats, plus single still images (read as one frame).
_PIL_ANIMATED = {".gif", ".webp"}
_PIL_STILL = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
# PIL decoders report damaged data with assorted exception types (IndexError, struct.error, ...).
_PIL_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, ZeroDivisionError)
_FRAME_SUFFIXES = {".png", ".jpg", ".jpeg"}
WRITE_FORMATS = (".mp4", ".gif", ".webp", ".png (or a folder path ending in '/' or without suffix)")


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` learns without decoding every frame. ``fps``/``duration_s`` are ``None`` for a
    frame folder without a sidecar JSON, which carries no timing."""

    frames: int
    fps: float | None
    width: int
    height: int
    duration_s: float | None
    codec: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- reading


def read_video(path: str | os.PathLike[str], *, max_frames: int | None = None, stride: int = 1) -> np.ndarray:
    """Decode a video to uint8 RGB ``[F, H, W, 3]``.

    ``stride`` keeps every ``stride``-th frame starting at frame 0; ``max_frames`` caps how many frames are
    returned (counted after striding), and decoding stops as soon as it is reached.
    Raises ``FormatError`` (one line) for a corrupt, truncated or non-video file, ``FileNotFoundError`` when
    the path does not exist.
    """
    if stride < 1:
        raise MotionkitError(f"stride must be >= 1, got {stride}")
    if max_frames is not None and max_frames < 1:
        raise MotionkitError(f"max_frames must be >= 1 (or None for all frames), got {max_frames}")
    path = _existing(path)
    frames = list(_take(_iter_frames(path), max_frames=max_frames, stride=stride))
    if not frames:
        raise FormatError(f"{path}: no frames could be decoded; the file is empty or not a video")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise FormatError(f"{path}: frames have different sizes {sorted(shapes)}; re-encode to one size")
    return np.stack(frames)


def iter_video(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Yield uint8 ``[H, W, 3]`` RGB frames one by one (for long videos that should not sit in memory)."""
    return _iter_frames(_existing(path))


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Frame count, fps, size, duration and codec of a video, a GIF/WebP, or a frame folder."""
    path = _existing(path)
    if path.is_dir():
        return _probe_folder(path)
    if path.suffix.lower() in _PIL_ANIMATED | _PIL_STILL:
        return _probe_pil(path)
    return _probe_av(path)


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.exists():
        raise missing_path_error(path)
    return path


def _take(frames: Iterator[np.ndarray], *, max_frames: int | None, stride: int) -> Iterator[np.ndarray]:
    kept = 0
    for index, frame in enumerate(frames):
        if index % stride:
            continue
        yield frame
        kept += 1
        if max_frames is not None and kept >= max_frames:
            return


def _iter_frames(path: Path) -> Iterator[np.ndarray]:
    if path.is_dir():
        return _iter_folder(path)
    if path.suffix.lower() in _PIL_ANIMATED | _PIL_STILL:
        return _iter_pil(path)
    return _iter_av(path)


def _natural_key(name: str) -> list[Any]:
    # frame_2.png sorts before frame_10.png
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _frame_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in _FRAME_SUFFIXES and not p.name.startswith(".")]
    if not files:
        raise FormatError(f"{folder}: folder holds no .png/.jpg frames; point at a video file or a frame folder")
    return sorted(files, key=lambda p: _natural_key(p.name))


def _open_image(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, *_PIL_DECODE_ERRORS) as err:
        raise FormatError(f"{path}: not a readable image ({_reason(err)})") from None
    return image


def _iter_folder(folder: Path) -> Iterator[np.ndarray]:
    for file in _frame_files(folder):
        yield np.asarray(_open_image(file).convert("RGB"))


def _pil_timing(image: Image.Image, path: Path) -> tuple[list[float], list[int]]:
    """Duration (ms) of each stored frame of an animated image, and how many constant-rate frames each stands for.

    GIF and WebP writers (PIL, libwebp) merge identical consecutive frames into one longer frame. To give
    back a constant-rate video, a frame lasting k times the base duration counts as k frames. The base is
    1000/fps from a sidecar JSON when there is one, else the shortest frame duration in the file.
    """
    durations = []
    for frame in ImageSequence.Iterator(image):
        frame.load()  # WebP only reports a frame's duration once it is decoded
        durations.append(float(frame.info.get("duration", 0) or 0))
    sidecar = _read_sidecar(path)
    fps = _positive(sidecar.get("fps"))
    base_ms = 1000.0 / fps if fps else min((d for d in durations if d > 0), default=0.0)
    repeats = [max(1, round(d / base_ms)) if base_ms > 0 else 1 for d in durations]
    expected = _positive(sidecar.get("frames"))
    if len(durations) == 1 and expected:
        # A fully static clip collapses to one stored frame and WebP then keeps no duration at all.
        repeats = [int(expected)]
    return durations, repeats



def _gif_cut_short(path: Path) -> bool:
    """A GIF ends with its trailer byte (0x3B); PIL stops quietly at a file cut between two frames."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return True
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\x3b"


def _iter_pil(path: Path) -> Iterator[np.ndarray]:
    image = _open_image(path)
    try:
        _, repeats = _pil_timing(image, path)
        for frame, repeat in zip(ImageSequence.Iterator(image), repeats):
            array = np.asarray(frame.convert("RGB"))
            for _ in range(repeat):
                yield array
        if (image.format or "").upper() == "GIF" and _gif_cut_short(path):
            raise FormatError(f"{path}: truncated, the GIF ends without its trailer after the frames read; re-export it")
    except FormatError:
        raise
    except _PIL_DECODE_ERRORS as err:
        raise FormatError(f"{path}: animation is corrupt or truncated ({_reason(err)})") from None
    finally:
        image.close()


def _iter_av(path: Path) -> Iterator[np.ndarray]:
    import av

    container = _open_av(path)
    try:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        expected = int(stream.frames or 0)
        rate = stream.average_rate or stream.guessed_rate
        decoded, end = 0, 0.0
        for frame in container.decode(stream):
            decoded += 1
            if frame.time is not None and rate:
                end = max(end, float(frame.time) + 1.0 / float(rate))
            yield frame.to_ndarray(format="rgb24")
        # FFmpeg stops quietly at a cut-off file; the header's frame count exposes the loss.
        if decoded < expected:
            raise FormatError(
                f"{path}: truncated, the header lists {expected} frames but only {decoded} could be decoded; "
                "re-export the video"
            )
        # Matroska/WebM headers list no frame count but do give the duration.
        if not expected and rate and container.duration and end:
            listed = container.duration / 1_000_000
            if listed - end > 1.5 / float(rate):
                raise FormatError(
                    f"{path}: truncated, the header lists {listed:.2f} s but the frames decoded end at {end:.2f} s; "
                    "re-export the video"
                )
    except av.error.FFmpegError as err:
        raise FormatError(f"{path}: video data is corrupt or truncated ({_reason(err)})") from None
    finally:
        container.close()


def _open_av(path: Path) -> Any:
    import av

    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise FormatError(f"{path}: not a readable video ({_reason(err)}); check the file or re-encode it") from None


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise FormatError(f"{path}: the file has no video stream")
    return container.streams.video[0]


def _reason(err: BaseException) -> str:
    # FFmpeg/OS errors carry "[Errno N] message: 'file'"; keep only the message, on one line.
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return text.splitlines()[0].strip(" :;") or type(err).__name__


def _probe_av(path: Path) -> VideoInfo:
    import av

    container = _open_av(path)
    try:
        stream = _video_stream(container, path)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        frames = int(stream.frames or 0)
        if frames == 0:
            # Matroska/WebM headers carry no frame count; counting packets avoids decoding.
            frames = sum(1 for packet in container.demux(stream) if packet.size)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = frames / fps if fps else None
        ctx = stream.codec_context
        return VideoInfo(frames, fps, int(ctx.width), int(ctx.height), duration, ctx.name)
    except av.error.FFmpegError as err:
        raise FormatError(f"{path}: video data is corrupt or truncated ({_reason(err)})") from None
    finally:
        container.close()


def _probe_pil(path: Path) -> VideoInfo:
    image = _open_image(path)
    try:
        durations, repeats = _pil_timing(image, path)
        codec = (image.format or path.suffix[1:]).lower()
        frames, duration = sum(repeats), sum(durations) / 1000
        fps = frames / duration if duration > 0 else None
        return VideoInfo(frames, fps, image.width, image.height, duration if duration > 0 else None, codec)
    except _PIL_DECODE_ERRORS as err:
        raise FormatError(f"{path}: animation is corrupt or truncated ({_reason(err)})") from None
    finally:
        image.close()


def _read_sidecar(path: Path) -> dict[str, Any]:
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a broken sidecar is not an error for the frames themselves
    return data if isinstance(data, dict) else {}


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _sidecar_fps(path: Path) -> float | None:
    return _positive(_read_sidecar(path).get("fps"))


def _probe_folder(folder: Path) -> VideoInfo:
    files = _frame_files(folder)
    first = _open_image(files[0])
    fps = _sidecar_fps(folder)
    duration = len(files) / fps if fps else None
    codec = first.format.lower() if first.format else "png"
    return VideoInfo(len(files), fps, first.width, first.height, duration, codec)


# --------------------------------------------------------------------------------------------- writing


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the metadata JSON of ``path`` lives: ``OUT.mp4`` -> ``OUT.mp4.json``, folder ``OUT/`` -> ``OUT.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def to_uint8_frame(frame: Any) -> np.ndarray:
    """One frame (PIL image, numpy array or torch tensor; HWC or CHW; uint8 or float in [0, 1]) as uint8 HWC RGB."""
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    if hasattr(frame, "detach"):  # torch tensor, without importing torch for callers that never use it
        frame = frame.detach().cpu()
        if frame.is_floating_point():
            frame = frame.float()
        frame = frame.numpy()
    array = np.asarray(frame)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise MotionkitError(f"a frame must be [H, W, C] or [C, H, W], got shape {array.shape}")
    if array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # CHW -> HWC
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] == 4:
        array = array[..., :3]  # alpha is dropped: video formats here store RGB only
    elif array.shape[-1] != 3:
        raise MotionkitError(f"a frame needs 1, 3 or 4 channels, got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):
        return np.ascontiguousarray((np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8))
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer):
        if array.min(initial=0) < 0 or array.max(initial=0) > 255:
            raise MotionkitError("integer frames must lie in 0..255; scale them or pass floats in [0, 1]")
        return array.astype(np.uint8)
    raise MotionkitError(f"unsupported frame dtype {array.dtype}; pass uint8 or float in [0, 1]")


def _frame_iter(frames: Any) -> Iterator[np.ndarray]:
    """Lazily convert ``frames`` (a sequence/iterator of frames, or one 4-D array/tensor) to uint8 HWC."""
    if hasattr(frames, "ndim") and not isinstance(frames, Image.Image):
        if frames.ndim != 4:
            raise MotionkitError(f"frames must be 4-D [F, H, W, 3] or [F, 3, H, W], got shape {tuple(frames.shape)}")
    for frame in frames:
        yield to_uint8_frame(frame)


def resolve_target(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """Where a video written to ``path`` lands and as what kind (``mp4``, ``gif``, ``webp`` or ``png`` folder)."""
    text = os.fspath(path)
    target = Path(text)
    suffix = target.suffix.lower()
    if text.endswith(("/", os.sep)) or suffix == "":
        return target, "png"
    if suffix == ".png":
        return target.with_suffix(""), "png"  # "clip.png" means the frame folder "clip/"
    if suffix in (".mp4", ".gif", ".webp"):
        return target, suffix[1:]
    raise MotionkitError(f"{target}: cannot write '{suffix}' videos; use one of {', '.join(WRITE_FORMATS)}")


def write_video(
    frames: Any,
    path: str | os.PathLike[str],
    *,
    fps: float = 8,
    metadata: dict[str, Any] | None = None,
    crf: int = 18,
    lossless: bool = True,
    quality: int = 90,
) -> Path:
    """Write frames to ``path`` atomically; return the path written.

    ``frames``: list of PIL images, uint8 ``[F, H, W, 3]``, or float ``[F, 3, H, W]`` / ``[F, H, W, 3]`` in
    [0, 1] (numpy or torch); an iterator of frames works too and is consumed once.
    Format from the suffix:
      ``.mp4``  H.264 (libx264) yuv420p at ``crf`` (0-51, lower is better); odd sizes are padded to even by
                repeating the last row/column, so read-back may be one pixel larger.
      ``.gif``  loops forever; frame duration 1000/fps ms (GIF stores 10 ms units). Colours are reduced to a
                256-entry palette, and PIL merges identical consecutive frames into one longer frame.
      ``.webp`` animated WebP, ``lossless`` or lossy at ``quality`` (0-100).
      ``.png``, a path ending in ``/``, or no suffix: a folder of numbered PNG frames (``clip.png`` -> ``clip/``).
    With ``metadata``, a sidecar ``<output>.json`` (``clip/`` -> ``clip.json``) holds it plus fps, frames,
    width and height; without it, a sidecar left by an earlier write to the same path is removed.
    """
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise MotionkitError(f"fps must be a positive number, got {fps!r}")
    target, kind = resolve_target(path)
    if metadata is not None:
        # Serialise once up front so bad metadata fails before anything is written.
        json.dumps(metadata, default=str)
    writer = {"mp4": _write_mp4, "gif": _write_gif, "webp": _write_webp, "png": _write_png_folder}[kind]
    sidecar = sidecar_path(target)

    def drop_old_sidecar() -> None:
        # It describes the video about to be replaced (and would mislead GIF/WebP timing): it goes before the
        # new video moves in, so no interruption can leave the new video beside the old record.
        with contextlib.suppress(FileNotFoundError):
            sidecar.unlink()

    if kind == "png":
        with atomic_path(target, is_dir=True, before_replace=drop_old_sidecar) as tmp:
            count, height, width = writer(_frame_iter(frames), tmp, fps=fps)
    else:
        with atomic_path(target, before_replace=drop_old_sidecar) as tmp:
            options = {"crf": crf, "lossless": lossless, "quality": quality}
            count, height, width = writer(_frame_iter(frames), tmp, fps=fps, **options)
    if metadata is not None:
        meta_json = {**metadata, "fps": fps, "frames": count, "width": width, "height": height}
        with atomic_write(sidecar) as handle:
            json.dump(meta_json, handle, indent=2, default=str)
            handle.write("\n")
    return target


def _check_size(frame: np.ndarray, size: tuple[int, int] | None, index: int) -> tuple[int, int]:
    if size is not None and frame.shape[:2] != size:
        raise MotionkitError(
            f"frame {index} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is {size[1]}x{size[0]}; "
            "resize all frames to one size"
        )
    return frame.shape[:2]


def _no_frames() -> MotionkitError:
    return MotionkitError("no frames to write; pass at least one frame")


def _write_mp4(frames: Iterable[np.ndarray], tmp: Path, *, fps: float, crf: int, **_: Any) -> tuple[int, int, int]:
    import av

    if not 0 <= crf <= 51:
        raise MotionkitError(f"crf must be in 0..51 for H.264, got {crf}")
    container = av.open(str(tmp), mode="w", format="mp4")
    try:
        stream = None
        size = None
        count = 0
        for count, frame in enumerate(frames, start=1):
            size = _check_size(frame, size, count - 1)
            height, width = size
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                # yuv420p subsamples chroma 2x2, so the encoder needs even sides.
                stream.width, stream.height = width + width % 2, height + height % 2
                stream.pix_fmt = "yuv420p"
                # One encoder thread: x264's output depends on its thread count (frame threading changes
                # rate control), which "auto" takes from the cores this process may use.
                stream.options = {"crf": str(crf), "threads": "1"}
            if width % 2 or height % 2:
                frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise _no_frames()
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return count, size[0], size[1]


def _collect(frames: Iterable[np.ndarray]) -> list[Image.Image]:
    images, size = [], None
    for index, frame in enumerate(frames):
        size = _check_size(frame, size, index)
        images.append(Image.fromarray(frame))
    if not images:
        raise _no_frames()
    return images


def _write_gif(frames: Iterable[np.ndarray], tmp: Path, *, fps: float, **_: Any) -> tuple[int, int, int]:
    images = _collect(frames)
    images[0].save(
        tmp, format="GIF", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0, disposal=1,
        optimize=False,
    )
    return len(images), images[0].height, images[0].width


def _write_webp(
    frames: Iterable[np.ndarray], tmp: Path, *, fps: float, lossless: bool, quality: int, **_: Any
) -> tuple[int, int, int]:
    if not 0 <= quality <= 100:
        raise MotionkitError(f"quality must be in 0..100 for WebP, got {quality}")
    images = _collect(frames)
    images[0].save(
        tmp, format="WEBP", save_all=True, append_images=images[1:], duration=round(1000.0 / fps), loop=0,
        lossless=lossless, quality=quality, method=4,
    )
    return len(images), images[0].height, images[0].width


def _write_png_folder(frames: Iterable[np.ndarray], tmp: Path, *, fps: float) -> tuple[int, int, int]:
    size = None
    count = 0
    for count, frame in enumerate(frames, start=1):
        size = _check_size(frame, size, count - 1)
        Image.fromarray(frame).save(tmp / f"{count - 1:05d}.png", compress_level=1)
    if size is None:
        raise _no_frames()
    return count, size[0], size[1]

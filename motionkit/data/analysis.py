"""Per-video curation analysis, shared by every engine (local processes, Ray Data).

Two stages, so an engine can run them as separate steps (and put, say, a captioning stage on a GPU
after them):

1. :func:`detect_shots`: probe the file, check that a frame decodes, find scene cuts with PySceneDetect's
   ContentDetector;
2. :func:`measure_shots`: per shot, the Farneback motion score (SVD's recipe: frame pairs ``1/motion_fps``
   seconds apart at a 128 px short side) and a 64-bit difference hash of the middle frame.

Every shot is measured, even one that a filter rejects, so the verdicts are a pure function of the
measurements and the options (:func:`clip_verdicts`): the parquet manifest keeps rejected clips with
their verdicts, and filters can be re-run on it without decoding anything again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from motionkit.data.manifest import FILTERS, Clip
from motionkit.errors import MotionkitError

__all__ = [
    "MOTION_SHORT_SIDE",
    "CurateOptions",
    "FileResult",
    "HashIndex",
    "Shots",
    "analyze_video",
    "clip_verdicts",
    "detect_shots",
    "difference_hash",
    "hamming",
    "measure_shots",
]

# Motion scores are Farneback pixels at this short side, per 1/motion_fps seconds.
MOTION_SHORT_SIDE = 128

# The per-clip filters, in FILTERS order; "duplicate" needs the other clips and is applied by the caller.
CLIP_FILTERS = tuple(name for name in FILTERS if name != "duplicate")


@dataclass(frozen=True)
class CurateOptions:
    """Filter settings. They are stored in the ``.done`` sidecar so a resumed run cannot silently mix
    clips filtered with different settings."""

    min_duration: float = 1.0  # seconds
    min_size: int = 0  # shorter side, pixels
    min_motion: float | None = 0.5  # about 0.4% of the short side per 0.5 s: a still shot
    max_motion: float | None = None
    dedup_threshold: int | None = 4  # Hamming distance over 64 bits; None disables
    scene_threshold: float = 27.0  # ContentDetector's default
    min_scene_len: int = 15  # frames, ContentDetector's default
    motion_fps: float = 2.0  # SVD scores motion on frames 0.5 s apart
    motion_pairs: int = 4  # frame pairs per clip, spread over its length

    def __post_init__(self) -> None:
        if self.min_duration < 0 or self.min_size < 0:
            raise MotionkitError("--min-duration and --min-size must be >= 0")
        if self.min_motion is not None and self.max_motion is not None and self.min_motion > self.max_motion:
            raise MotionkitError(f"--min-motion {self.min_motion} is above --max-motion {self.max_motion}; swap them")
        if self.dedup_threshold is not None and not 0 <= self.dedup_threshold < 64:
            raise MotionkitError(f"--dedup-threshold must be in 0..63 (or -1 to disable), got {self.dedup_threshold}")
        if self.motion_fps <= 0 or self.motion_pairs < 1:
            raise MotionkitError("motion_fps must be > 0 and motion_pairs >= 1")


Verdicts = dict[str, "bool | None"]  # filter name -> rejects the clip (None: not evaluated)


@dataclass
class FileResult:
    """What the analysis returns for one video: every shot with its per-clip filter verdicts
    (duplicates and captions are decided later, in input order, by the caller), or why it was skipped.

    ``clips`` are the shots that passed every per-clip filter; ``removed`` counts the others by the
    first filter (in ``FILTERS`` order) that rejects them."""

    path: str
    rows: list[tuple[Clip, Verdicts]] = field(default_factory=list)
    error: str | None = None

    @property
    def clips(self) -> list[Clip]:
        return [clip for clip, verdicts in self.rows if not any(verdicts.values())]

    @property
    def removed(self) -> dict[str, int]:
        counts: Counter = Counter()
        for _, verdicts in self.rows:
            first = next((name for name in FILTERS if verdicts.get(name)), None)
            if first is not None:
                counts[first] += 1
        return dict(counts)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for engines that move results between processes as rows)."""
        return {"path": self.path, "error": self.error, "rows": [[asdict(c), v] for c, v in self.rows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileResult:
        return cls(data["path"], [(Clip(**c), dict(v)) for c, v in data["rows"]], data["error"])


@dataclass(frozen=True)
class Shots:
    """Output of :func:`detect_shots`: the probed stream and its shots as ``[start, end)`` frame ranges.
    ``too_small``: the whole video is below ``min_size`` and was not split."""

    fps: float
    width: int
    height: int
    frames: int
    scenes: tuple[tuple[int, int], ...]
    too_small: bool = False


# --------------------------------------------------------------------------- hashing


def difference_hash(frame: np.ndarray) -> int:
    """64-bit difference hash (dHash) of an RGB uint8 frame: robust to rescaling and re-encoding, so
    re-uploads and copies of a shot land within a few bits of each other."""
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class HashIndex:
    """Near-duplicate lookup for 64-bit hashes within Hamming distance ``threshold``.

    The hash is cut into ``threshold + 1`` bands; two hashes within the threshold agree exactly on at
    least one band (pigeonhole), so only hashes sharing a band are compared: near-linear instead of
    quadratic over millions of clips.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        n = threshold + 1
        edges = [round(64 * i / n) for i in range(n + 1)]
        self._bands = [(lo, (1 << (hi - lo)) - 1) for lo, hi in zip(edges[:-1], edges[1:])]
        self._tables: list[dict[int, list[int]]] = [{} for _ in self._bands]

    def find(self, value: int) -> int | None:
        """A stored hash within the threshold of ``value``, or None."""
        for (shift, mask), table in zip(self._bands, self._tables):
            for other in table.get((value >> shift) & mask, ()):
                if hamming(value, other) <= self.threshold:
                    return other
        return None

    def add(self, value: int) -> None:
        for (shift, mask), table in zip(self._bands, self._tables):
            table.setdefault((value >> shift) & mask, []).append(value)


# --------------------------------------------------------------------------- filters


def clip_verdicts(clip: Clip, options: CurateOptions) -> Verdicts:
    """Which per-clip filters reject ``clip`` (True), from its measurements alone."""
    short_side = min(clip.width, clip.height)
    if short_side < options.min_size:
        return {"too_small": True, "too_short": None, "static": None, "too_fast": None}
    measured = np.isfinite(clip.motion_score)
    return {
        "too_small": False,
        "too_short": clip.num_frames / clip.fps < options.min_duration,
        "static": (options.min_motion is not None and clip.motion_score < options.min_motion) if measured else None,
        "too_fast": (options.max_motion is not None and clip.motion_score > options.max_motion) if measured else None,
    }


# --------------------------------------------------------------------------- stages


def _detect_scenes(path: str, options: CurateOptions) -> list[tuple[int, int]]:
    """Shots as ``[start, end)`` frame ranges covering every decoded frame."""
    from scenedetect import ContentDetector, SceneManager, open_video

    video = open_video(path, backend="pyav")
    manager = SceneManager()  # auto-downscales large frames before scoring
    manager.add_detector(ContentDetector(threshold=options.scene_threshold, min_scene_len=options.min_scene_len))
    manager.detect_scenes(video)
    scenes = manager.get_scene_list(start_in_scene=True)
    return [(start.frame_num, end.frame_num) for start, end in scenes if end.frame_num > start.frame_num]


def _motion_plan(start: int, end: int, fps: float, options: CurateOptions) -> list[tuple[int, int]]:
    """Frame pairs ``1 / motion_fps`` seconds apart, spread over the clip, so scores of short and long
    clips (and of 24 and 60 fps sources) measure motion over the same time step."""
    gap = max(1, round(fps / options.motion_fps))
    gap = min(gap, end - start - 1)
    if gap < 1:
        return []
    last_first = end - 1 - gap
    firsts = np.linspace(start, last_first, options.motion_pairs).round().astype(int)
    return [(int(a), int(a) + gap) for a in sorted(set(firsts.tolist()))]


class SkipVideo(MotionkitError):
    """The file cannot be curated; the message is the reason listed under 'skipped'."""


def detect_shots(path: str, options: CurateOptions) -> Shots:
    """Stage 1: probe, decode check, scene cuts. Raises :class:`SkipVideo` (or a decoder error) for a
    file that cannot be curated."""
    from motionkit.data.decode import decode_clip
    from motionkit.errors import FormatError
    from motionkit.video_io import probe_video

    info = probe_video(path)
    if not info.fps:
        raise SkipVideo("no frame rate in the file")
    fps = float(info.fps)
    if min(info.width, info.height) < options.min_size:
        # The whole video counts as one clip: no need to split it.
        return Shots(fps, info.width, info.height, info.frames, ((0, max(info.frames, 1)),), too_small=True)
    # A header can promise frames that do not decode (a 16000x16000 claim over a few bytes): PySceneDetect
    # still reports a one-frame scene for such a file, so check one real frame first.
    try:
        decode_clip(path, [0], short_side=MOTION_SHORT_SIDE)
    except FormatError:
        raise SkipVideo(
            f"no frame could be decoded (the header says {info.width}x{info.height} {info.codec or 'video'})"
        ) from None
    scenes = _detect_scenes(path, options)
    if not scenes:
        raise SkipVideo("no frames could be decoded")
    return Shots(fps, info.width, info.height, info.frames, tuple(scenes))


def measure_shots(path: str, shots: Shots, options: CurateOptions, manifest_path: str = "") -> FileResult:
    """Stage 2: motion score and middle-frame hash of every shot, and the per-clip verdicts."""
    from motionkit.data.decode import decode_clip
    from motionkit.metrics import motion_score

    result = FileResult(path=manifest_path or path)
    fps = shots.fps
    for start, end in shots.scenes:
        score, digest = float("nan"), ""
        if not shots.too_small:
            pairs = _motion_plan(start, end, fps, options)
            middle = (start + end - 1) // 2
            wanted = sorted({i for pair in pairs for i in pair} | {middle})
            # Every video is scaled to the same short side so scores share one unit across the dataset.
            frames = decode_clip(path, wanted, short_side=MOTION_SHORT_SIDE)
            by_index = dict(zip(wanted, frames))
            if pairs:
                score = float(np.mean([motion_score(np.stack([by_index[a], by_index[b]])) for a, b in pairs]))
            else:
                score = 0.0
            score = round(score, 6)
            digest = f"{difference_hash(by_index[middle]):016x}"
        clip = Clip(
            path=result.path,
            start_frame=start,
            end_frame=end,
            start_s=round(start / fps, 6),
            end_s=round(end / fps, 6),
            fps=fps,
            width=shots.width,
            height=shots.height,
            motion_score=score,
            caption="",
            hash=digest,
        )
        result.rows.append((clip, clip_verdicts(clip, options)))
    return result


def failure_reason(err: BaseException, path: str) -> str:
    """One line for the 'skipped' list (messages that start with the path lose it: the list names it)."""
    if isinstance(err, MotionkitError):
        return str(err).removeprefix(f"{path}: ")
    reason = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {reason}".rstrip(": ")


def analyze_video(path: str, options: CurateOptions, manifest_path: str = "") -> FileResult:
    """Both stages for one video. Never raises for a bad file: the reason comes back in
    ``FileResult.error``. ``manifest_path`` is the path string written to the manifest (default ``path``)."""
    try:
        return measure_shots(path, detect_shots(path, options), options, manifest_path)
    except Exception as err:  # noqa: BLE001 - one odd file (decoder, container, codec bug) must not stop a long run
        return FileResult(path=manifest_path or path, error=failure_reason(err, path))

"""Control settings given as text (command line, batch files): what to load and what to pass a pipeline.

``--controlnet PATH[:SCALE]`` (repeatable) pairs in order with ``--control-video FILE|DIR``; ``--control-start``
/ ``--control-end`` give one fraction for every net or one per net. ``--sparsectrl PATH[:SCALE]`` takes
``--keyframe INDEX:IMAGE`` (repeatable; negative indices count from the end). The two kinds do not mix:
a pipeline holds one control model. Everything here is checked before any model loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from motionkit.errors import MotionkitError


@dataclass(frozen=True)
class ControlNetSpec:
    path: str
    scale: float
    video: str
    start: float
    end: float


@dataclass(frozen=True)
class Keyframe:
    index: int  # as given: negative counts from the end
    image: str


@dataclass(frozen=True)
class SparseCtrlSpec:
    path: str
    scale: float
    keyframes: tuple[Keyframe, ...]
    start: float = 0.0
    end: float = 1.0


@dataclass
class ControlPlan:
    """ControlNets with their videos, or one SparseCtrl model with its keyframes."""

    controlnets: list[ControlNetSpec] = field(default_factory=list)
    sparsectrl: SparseCtrlSpec | None = None

    def check_frames(self, num_frames: int, where: str = "") -> None:
        """Refuse keyframe indices outside a video of ``num_frames`` frames."""
        at = f"{where}: " if where else ""
        for keyframe in self.sparsectrl.keyframes if self.sparsectrl else ():
            if not -num_frames <= keyframe.index < num_frames:
                raise MotionkitError(
                    f"{at}--keyframe {keyframe.index} is out of range for {num_frames} frames: use 0 to {num_frames - 1} "
                    f"or -1 to {-num_frames}"
                )

    def load_model(self, device: Any = None, dtype: Any = None) -> Any:
        """The pipeline's ``controlnet``: a ControlNetModel, a list of them, or a SparseControlNetModel."""
        from motionkit.formats import load_control_model
        from diffusers import ControlNetModel, SparseControlNetModel

        def load(path: str, expected: type, flag: str) -> Any:
            model = load_control_model(path)
            if not isinstance(model, expected):
                raise MotionkitError(
                    f"{path} holds a {type(model).__name__}, which {flag} does not take: "
                    f"pass it with {'--sparsectrl' if flag == '--controlnet' else '--controlnet'}"
                )
            return model.to(device=device, dtype=dtype)

        if self.sparsectrl is not None:
            return load(self.sparsectrl.path, SparseControlNetModel, "--sparsectrl")
        nets = [load(spec.path, ControlNetModel, "--controlnet") for spec in self.controlnets]
        return nets[0] if len(nets) == 1 else nets

    def call_kwargs(self) -> dict[str, Any]:
        """The control arguments of ``MotionPipeline.__call__``."""
        from motionkit.pipeline.control import load_control_video

        if self.sparsectrl is not None:
            s = self.sparsectrl
            return {
                "conditioning_frames": [k.image for k in s.keyframes],
                "controlnet_frame_indices": [k.index for k in s.keyframes],
                "controlnet_conditioning_scale": s.scale,
                "control_guidance_start": s.start,
                "control_guidance_end": s.end,
            }
        videos = [load_control_video(spec.video) for spec in self.controlnets]
        single = len(self.controlnets) == 1
        return {
            "conditioning_frames": videos[0] if single else videos,
            "controlnet_conditioning_scale": self.controlnets[0].scale if single else [s.scale for s in self.controlnets],
            "control_guidance_start": [s.start for s in self.controlnets],
            "control_guidance_end": [s.end for s in self.controlnets],
        }

    def to_dict(self) -> dict[str, Any]:
        """What the sidecar JSON records."""
        return {
            "controlnets": [asdict(spec) for spec in self.controlnets],
            "sparsectrl": asdict(self.sparsectrl) if self.sparsectrl else None,
        }


def _model_spec(spec: Any, flag: str) -> tuple[str, float]:
    from motionkit.pipeline.lora import parse_lora_spec

    if isinstance(spec, dict) and "path" in spec:
        path, scale = str(spec["path"]), float(spec.get("scale", 1.0))
    elif isinstance(spec, str):
        try:
            path, scale = parse_lora_spec(spec)
        except MotionkitError:
            raise MotionkitError(f"bad {flag} value {spec!r}: give PATH or PATH:SCALE, e.g. depth:0.8") from None
    else:
        raise MotionkitError(f"bad {flag} entry {spec!r}: give PATH, PATH:SCALE or {{path: ..., scale: ...}}")
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such control model; check {flag}")
    return path, scale


def _keyframe(spec: Any) -> Keyframe:
    if isinstance(spec, dict) and "index" in spec and "image" in spec:
        index, image = spec["index"], str(spec["image"])
    elif isinstance(spec, str) and ":" in spec:
        index, image = spec.split(":", 1)
    else:
        raise MotionkitError(f"bad --keyframe value {spec!r}: give INDEX:IMAGE, e.g. 0:first.png or -1:last.png")
    try:
        index = int(index)
    except (TypeError, ValueError):
        raise MotionkitError(f"bad --keyframe value {spec!r}: the index before ':' must be a whole number") from None
    if not Path(image).is_file():
        raise FileNotFoundError(f"{image}: no such keyframe image; check --keyframe")
    return Keyframe(index, image)


def _fractions(values: Any, count: int, flag: str, default: float) -> list[float]:
    if values is None or values == []:
        return [default] * count
    values = values if isinstance(values, (list, tuple)) else [values]
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise MotionkitError(f"{flag} takes fractions of the schedule between 0 and 1, got {values}") from None
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise MotionkitError(f"{flag} has {len(values)} values for {count} control models: give one value or one per model")
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise MotionkitError(f"{flag} takes fractions of the schedule between 0 and 1, got {values}")
    return values


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def control_plan(
    controlnet: Any = None,
    control_video: Any = None,
    control_start: Any = None,
    control_end: Any = None,
    sparsectrl: Any = None,
    keyframe: Any = None,
) -> ControlPlan | None:
    """The control of a run from its text settings; ``None`` when none is asked for."""
    nets, videos, keyframes = _as_list(controlnet), _as_list(control_video), _as_list(keyframe)
    if sparsectrl is None and not nets:
        for given, flag in ((videos, "--control-video"), (keyframes, "--keyframe")):
            if given:
                raise MotionkitError(f"{flag} needs a control model: pass {'--controlnet' if flag == '--control-video' else '--sparsectrl'}")
        if control_start is not None or control_end is not None:
            raise MotionkitError("--control-start / --control-end need --controlnet or --sparsectrl")
        return None
    if sparsectrl is not None and nets:
        raise MotionkitError("--controlnet and --sparsectrl do not mix: a pipeline holds one kind of control model")
    if sparsectrl is not None:
        if isinstance(sparsectrl, (list, tuple)):
            if len(sparsectrl) != 1:
                raise MotionkitError("give one --sparsectrl model; several SparseCtrl models do not combine")
            sparsectrl = sparsectrl[0]
        if videos:
            raise MotionkitError("--control-video is for --controlnet; a SparseCtrl model takes --keyframe INDEX:IMAGE")
        if not keyframes:
            raise MotionkitError("--sparsectrl needs at least one --keyframe INDEX:IMAGE, e.g. 0:first.png")
        path, scale = _model_spec(sparsectrl, "--sparsectrl")
        parsed = tuple(_keyframe(k) for k in keyframes)
        (start,), (end,) = _fractions(control_start, 1, "--control-start", 0.0), _fractions(control_end, 1, "--control-end", 1.0)
        _check_order([start], [end])
        return ControlPlan(sparsectrl=SparseCtrlSpec(path, scale, parsed, start, end))
    if keyframes:
        raise MotionkitError("--keyframe is for --sparsectrl; a ControlNet takes --control-video FILE|DIR")
    if len(videos) != len(nets):
        raise MotionkitError(
            f"{len(nets)} --controlnet models need {len(nets)} --control-video values (one each, in order), got {len(videos)}"
        )
    starts = _fractions(control_start, len(nets), "--control-start", 0.0)
    ends = _fractions(control_end, len(nets), "--control-end", 1.0)
    _check_order(starts, ends)
    specs = []
    for net, video, start, end in zip(nets, videos, starts, ends):
        path, scale = _model_spec(net, "--controlnet")
        if not Path(str(video)).exists():
            raise FileNotFoundError(f"{video}: no such control video; give a video file or a folder of frames to --control-video")
        specs.append(ControlNetSpec(path, scale, str(video), start, end))
    return ControlPlan(controlnets=specs)


def _check_order(starts: list[float], ends: list[float]) -> None:
    for start, end in zip(starts, ends):
        if start >= end:
            raise MotionkitError(f"--control-start {start} must be below --control-end {end}")

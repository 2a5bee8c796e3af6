"""Prompt travel: prompts (and negative prompts) keyed by frame, interpolated into per-frame embeddings.

A schedule is a mapping from keys to prompts, ``{0: "a cat", 16: "a dog"}``, or the same as text,
``"0: a cat | 16: a dog"`` (``|`` or new lines between keys), or a list of ``KEY:PROMPT`` strings (the
command line's repeated ``--prompt-at``), or a list of mappings ``{frame, prompt, weight}``.

Keys (every form takes all of them):

- a whole number ``0 .. F-1``: that frame; a negative one counts from the end (``-1`` is the last frame);
- a fraction ``0.0 .. 1.0`` (a float, or text with a point) or a percentage (``"50%"``): that far
  through the video, ``round(fraction * (F - 1))``, so ``1.0`` and ``100%`` are the last frame;
- ``KEY@WEIGHT`` in text (``"16@1.3: a dog"``), or ``weight:`` in a mapping: how strongly the key's prompt
  conditions, as ``empty + weight * (prompt - empty)`` on its embeddings (``empty``: the encoded ``""``);
  1.0 leaves the prompt as it is, 0 gives the empty prompt.

Keys must be listed in increasing frame order, each frame at most once, all inside the video: anything
else is refused with one line naming the key. Between two keys the embeddings are interpolated (linearly,
as diffusers' FreeNoise prompt interpolation does, or by ``slerp`` per token); before the first key the
first prompt holds, past the last key the last one holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Union

import torch

from motionkit.errors import MotionkitError

INTERPOLATIONS = ("linear", "slerp")
# (start_frame, end_frame, start [1, ...], end [1, ...]) -> [end - start + 1, ...]: diffusers' callback shape.
Interpolator = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]
Key = Union[int, float, str]

_KEY = re.compile(r"^\s*(?P<key>[-+]?[0-9.]+%?)\s*(?:@\s*(?P<weight>[-+]?(\d+(\.\d*)?|\.\d+)))?\s*$")


@dataclass(frozen=True)
class PromptKey:
    key: Key  # as written: a frame, a negative frame, a fraction or a percentage
    prompt: str
    weight: float = 1.0


@dataclass(frozen=True)
class PromptSchedule:
    """Prompts keyed by frame; ``frames(num_frames)`` resolves and checks the keys for a video."""

    keys: tuple[PromptKey, ...]
    what: str = "prompt"  # names the schedule in error messages ("prompt" or "negative prompt")

    def __post_init__(self) -> None:
        if not self.keys:
            raise MotionkitError(f"empty {self.what} schedule: give at least one KEY:PROMPT, e.g. 0:a cat")

    @property
    def prompts(self) -> list[str]:
        return [k.prompt for k in self.keys]

    @property
    def weights(self) -> list[float]:
        return [k.weight for k in self.keys]

    def frames(self, num_frames: int) -> list[int]:
        """The frame of every key in a video of ``num_frames`` frames, checked: inside, increasing, no overlap."""
        frames: list[int] = []
        for index, entry in enumerate(self.keys):
            frame = resolve_key(entry.key, num_frames, self.what)
            if frames and frame == frames[-1]:
                raise MotionkitError(
                    f"{self.what} keys {self.keys[index - 1].key!r} and {entry.key!r} both fall on frame {frame} of "
                    f"{num_frames}: give each frame one key"
                )
            if frames and frame < frames[-1]:
                raise MotionkitError(
                    f"{self.what} key {entry.key!r} (frame {frame}) comes after key {self.keys[index - 1].key!r} "
                    f"(frame {frames[-1]}): list keys in increasing frame order"
                )
            frames.append(frame)
        return frames

    def to_list(self, num_frames: int | None = None) -> list[dict[str, Any]]:
        """What a sidecar records: each key as written, its frame (when the length is known), prompt and weight."""
        frames = self.frames(num_frames) if num_frames is not None else [None] * len(self.keys)
        return [
            {"key": k.key, **({"frame": f} if f is not None else {}), "prompt": k.prompt, "weight": k.weight}
            for k, f in zip(self.keys, frames)
        ]

    def __str__(self) -> str:
        return " | ".join(f"{k.key}{'' if k.weight == 1.0 else f'@{k.weight:g}'}: {k.prompt}" for k in self.keys)


def resolve_key(key: Key, num_frames: int, what: str = "prompt") -> int:
    """A key's frame in a video of ``num_frames`` frames (see the module docstring)."""
    last = num_frames - 1
    fix = f"use 0 to {last}, -1 to -{num_frames}, or a fraction 0.0-1.0 / 0%-100%"
    if isinstance(key, bool):
        raise MotionkitError(f"bad {what} key {key!r}: {fix}")
    if isinstance(key, str):
        text = key.strip()
        if text.endswith("%"):
            try:
                key = float(text[:-1]) / 100.0
            except ValueError:
                raise MotionkitError(f"bad {what} key {key!r}: {fix}") from None
        else:
            try:
                key = float(text) if "." in text or "e" in text.lower() else int(text)
            except ValueError:
                raise MotionkitError(f"bad {what} key {key!r}: {fix}") from None
    if isinstance(key, float):
        if not math.isfinite(key) or not 0.0 <= key <= 1.0:
            raise MotionkitError(f"{what} key {key!r} is not a fraction from 0.0 to 1.0 of the video: {fix}")
        return int(round(key * last))
    if not isinstance(key, int):
        raise MotionkitError(f"bad {what} key {key!r}: {fix}")
    frame = key + num_frames if key < 0 else key
    if not 0 <= frame < num_frames:
        raise MotionkitError(f"{what} key {key} is past the video's {num_frames} frames: {fix}")
    return frame


def _key_and_weight(text: str, what: str) -> tuple[Key, float]:
    match = _KEY.match(text)
    if not match:
        raise MotionkitError(
            f"bad {what} key {text.strip()!r}: write KEY[@WEIGHT]:PROMPT, with KEY a frame (16, -1) or a fraction (0.5, 50%)"
        )
    weight = float(match["weight"]) if match["weight"] is not None else 1.0
    return match["key"], weight


def parse_entry(spec: str, what: str = "prompt") -> PromptKey:
    """``KEY[@WEIGHT]:PROMPT`` (``16:a dog``, ``-1@1.2:a bird``, ``50%:a fox``) as one key."""
    if ":" not in spec:
        raise MotionkitError(f"bad {what} entry {spec!r}: write KEY:PROMPT, e.g. 16:a dog")
    key_text, prompt = spec.split(":", 1)
    key, weight = _key_and_weight(key_text, what)
    prompt = prompt.strip().strip('"').strip("'").strip()
    if not prompt and what == "prompt":
        raise MotionkitError(f"{what} key {key!r} has no text: write KEY:PROMPT, e.g. {key}:a dog")
    return PromptKey(key, prompt, weight)


def parse_schedule(text: str, what: str = "prompt") -> PromptSchedule:
    """``"0: a cat | 16: a dog"`` (``|`` or new lines between entries) as a schedule."""
    entries = [part for part in re.split(r"[|\n]", text) if part.strip()]
    return PromptSchedule(tuple(parse_entry(part, what) for part in entries), what)


def _mapping_entry(entry: Mapping[str, Any], what: str) -> PromptKey:
    unknown = sorted(set(entry) - {"frame", "key", "prompt", "weight"})
    if unknown or "prompt" not in entry or not ({"frame", "key"} & set(entry)):
        raise MotionkitError(f"bad {what} entry {dict(entry)!r}: give {{frame: KEY, prompt: TEXT[, weight: W]}}")
    weight = entry.get("weight", 1.0)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(float(weight)):
        raise MotionkitError(f"{what} weight {weight!r} must be a finite number")
    return PromptKey(entry.get("frame", entry.get("key")), str(entry["prompt"]), float(weight))


def as_schedule(value: Any, what: str = "prompt") -> PromptSchedule | None:
    """A schedule from any accepted form; ``None`` for a plain prompt (text, a list of texts, or ``None``)."""
    if value is None or isinstance(value, PromptSchedule):
        return value
    if isinstance(value, Mapping):
        keys = []
        for key, prompt in value.items():
            if isinstance(prompt, Mapping):
                keys.append(_mapping_entry({"frame": key, **prompt}, what))
                continue
            if not isinstance(prompt, str):
                raise MotionkitError(f"{what} at key {key!r} must be text, got {type(prompt).__name__}")
            if isinstance(key, str):
                key, weight = _key_and_weight(key, what)
                keys.append(PromptKey(key, prompt, weight))
            else:
                keys.append(PromptKey(key, prompt))
        return PromptSchedule(tuple(keys), what)
    if isinstance(value, Sequence) and not isinstance(value, str) and value and all(
        isinstance(v, Mapping) or (isinstance(v, str) and _looks_keyed(v)) for v in value
    ):
        return PromptSchedule(
            tuple(_mapping_entry(v, what) if isinstance(v, Mapping) else parse_entry(v, what) for v in value), what
        )
    return None


def _looks_keyed(text: str) -> bool:
    return ":" in text and bool(_KEY.match(text.split(":", 1)[0]))


# -- interpolation --------------------------------------------------------------------------------


def lerp(start_frame: int, end_frame: int, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Frames ``start_frame..end_frame`` (both included) from ``start`` to ``end``, linearly (diffusers' ``_lerp``)."""
    count = end_frame - start_frame + 1
    steps = [(1 - i / (count - 1)) * start + (i / (count - 1)) * end for i in range(count)]
    return torch.cat(steps)


def slerp(start_frame: int, end_frame: int, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """As ``lerp``, along the great circle between each token's two embedding vectors (norms interpolated)."""
    count = end_frame - start_frame + 1
    a, b = start.float(), end.float()
    norm_a, norm_b = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    unit_a, unit_b = a / norm_a.clamp_min(1e-12), b / norm_b.clamp_min(1e-12)
    theta = torch.acos((unit_a * unit_b).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    sin_theta = torch.sin(theta)
    parallel = sin_theta.abs() < 1e-6  # nearly the same direction: the circle is a line
    steps = []
    for i in range(count):
        t = i / (count - 1)
        wa = torch.where(parallel, torch.full_like(theta, 1 - t), torch.sin((1 - t) * theta) / sin_theta)
        wb = torch.where(parallel, torch.full_like(theta, t), torch.sin(t * theta) / sin_theta)
        direction = wa * unit_a + wb * unit_b
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        steps.append((direction * ((1 - t) * norm_a + t * norm_b)).to(start.dtype))
    return torch.cat(steps)


def interpolator(mode: str | Interpolator) -> Interpolator:
    if callable(mode):
        return mode
    if mode not in INTERPOLATIONS:
        raise MotionkitError(f"prompt interpolation {mode!r} is not one of {', '.join(INTERPOLATIONS)}")
    return lerp if mode == "linear" else slerp


def interpolate(
    frames: Sequence[int], values: torch.Tensor, num_frames: int, mode: str | Interpolator = "linear"
) -> torch.Tensor:
    """``values`` ``[K, ...]`` at key ``frames`` (increasing) to ``[num_frames, ...]``: held before the first key
    and past the last one, interpolated between keys. Segments are filled in order, as diffusers does, so a
    custom interpolator sees the same calls as diffusers' ``prompt_interpolation_callback``."""
    fill = interpolator(mode)
    frames, values = list(frames), values
    if frames[0] != 0:  # hold the first prompt back to frame 0
        frames, values = [0] + frames, torch.cat([values[:1], values])
    if frames[-1] != num_frames - 1:  # hold the last prompt to the end
        frames, values = frames + [num_frames - 1], torch.cat([values, values[-1:]])
    out = values.new_zeros((num_frames, *values.shape[1:]))
    if len(frames) == 1:  # a one-frame video
        return values[:1].clone()
    for i in range(len(frames) - 1):
        out[frames[i] : frames[i + 1] + 1] = fill(frames[i], frames[i + 1], values[i : i + 1], values[i + 1 : i + 2])
    return out


def weighted(values: torch.Tensor, empty: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """``empty + weight * (value - empty)`` per key (``values`` ``[K, ...]``, ``empty`` ``[1, ...]``)."""
    w = torch.tensor(list(weights), dtype=values.dtype, device=values.device).view(-1, *[1] * (values.ndim - 1))
    return empty + w * (values - empty)


# -- encoding -------------------------------------------------------------------------------------


def _by_frame(
    values: torch.Tensor, frames: list[int], keys: int, videos: int, num_frames: int, mode: str | Interpolator
) -> torch.Tensor:
    """``[K * videos, ...]`` (each key's rows adjacent, as ``encode_prompt`` repeats them) to per-frame
    ``[videos * F, ...]``, video-major as ``MotionUNet`` reads per-frame conditioning."""
    per_key = values.reshape(keys, videos, *values.shape[1:])
    if bool((per_key == per_key[:1]).all()):  # the same for every key (SDXL's size ids): nothing to interpolate
        per_frame = per_key[:1].expand(num_frames, *per_key.shape[1:])
    else:
        per_frame = interpolate(frames, per_key, num_frames, mode)
    return per_frame.transpose(0, 1).reshape(videos * num_frames, *values.shape[1:])


def encode_schedule(
    encode: Callable[[Any], Any],
    request: Any,
    schedule: PromptSchedule,
    negative: PromptSchedule | None,
    num_frames: int,
    mode: str | Interpolator = "linear",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-frame text conditioning for a schedule: ``(embeds, added_cond_kwargs)``, each ``[(2 if cfg) * B * F, ...]``
    with the negative half first.

    ``encode`` is a pipeline's ``_encode_text`` and ``request`` its prompt request: the key prompts are encoded
    in one batch (the positives without guidance, the negatives as the guidance branch of empty prompts, as
    diffusers' FreeNoise encodes them), weighted, then interpolated per frame.
    """
    from dataclasses import replace

    plain = dict(prompt_embeds=None, negative_prompt_embeds=None)
    videos = request.num_videos_per_prompt

    def tensors(text: Any, half: int | None) -> dict[str, torch.Tensor]:
        out = {"embeds": text.embeds, **text.added_cond_kwargs}
        return out if half is None else {k: v.chunk(2)[half] for k, v in out.items()}

    def per_frame(found: dict[str, torch.Tensor], sched: PromptSchedule, empty: dict[str, torch.Tensor] | None):
        frames, count = sched.frames(num_frames), len(sched.keys)
        if empty is not None:
            found = {
                k: weighted(v.reshape(count, videos, *v.shape[1:]), empty[k].reshape(1, videos, *v.shape[1:]), sched.weights)
                .reshape(v.shape) for k, v in found.items()
            }
        return {k: _by_frame(v, frames, count, videos, num_frames, mode) for k, v in found.items()}

    def empty_prompt() -> dict[str, torch.Tensor]:
        return tensors(encode(replace(request, prompt=[""], negative_prompt=None, do_cfg=False, **plain)), None)

    positive = tensors(encode(replace(request, prompt=schedule.prompts, negative_prompt=None, do_cfg=False, **plain)), None)
    reweigh = any(w != 1.0 for w in schedule.weights)
    out = per_frame(positive, schedule, empty_prompt() if reweigh else None)
    if not request.do_cfg:
        return out.pop("embeds"), out
    if negative is None:  # one negative prompt (or none) for every frame
        given = request.negative_prompt
        text = encode(replace(request, prompt=[""], negative_prompt=[given] if given is not None else None, do_cfg=True, **plain))
        found = tensors(text, 0)
        negatives = {k: v.repeat_interleave(num_frames, dim=0) for k, v in found.items()}
    else:
        text = encode(replace(request, prompt=[""] * len(negative.keys), negative_prompt=negative.prompts, do_cfg=True, **plain))
        reweigh = any(w != 1.0 for w in negative.weights)
        negatives = per_frame(tensors(text, 0), negative, empty_prompt() if reweigh else None)
    both = {k: torch.cat([negatives[k], out[k]]) for k in out}
    return both.pop("embeds"), both


# -- options given as text (command line, batch files) --------------------------------------------


def prompt_from_options(
    prompt: Any = None, prompt_at: Sequence[str] | None = None, prompt_schedule: str | None = None, what: str = "prompt"
) -> str | PromptSchedule | None:
    """One prompt from ``--prompt TEXT``, ``--prompt-at KEY:TEXT`` (repeated) or ``--prompt-schedule "K: T | ..."``
    (or a batch entry's ``prompt`` mapping / list): plain text stays text, the rest becomes a schedule."""
    flag = "--negative" if what == "negative prompt" else "--prompt"
    forms = [form for form, value in ((flag if flag == "--prompt" else "--negative-prompt", prompt), (f"{flag}-at", prompt_at),
             (f"{flag}-schedule", prompt_schedule)) if value not in (None, "", [])]
    if len(forms) > 1:
        raise MotionkitError(f"give the {what} one way, not {' and '.join(forms)}")
    if prompt_at:
        return as_schedule([str(v) for v in prompt_at], what) or PromptSchedule(tuple(parse_entry(str(v), what) for v in prompt_at), what)
    if prompt_schedule:
        return parse_schedule(str(prompt_schedule), what)
    if prompt is None or isinstance(prompt, str):
        return prompt
    schedule = as_schedule(prompt, what)
    if schedule is None:
        raise MotionkitError(f"bad {what} {prompt!r}: give text, or a schedule {{frame: text}} / a list of KEY:TEXT")
    return schedule

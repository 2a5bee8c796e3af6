"""One entry point over the world's scene kinds: draw a spec, render it (with its maps), caption it."""

from __future__ import annotations

from typing import Literal, Union, overload

import numpy as np

from motionkit.data.world.common import check_style
from motionkit.data.world.landscape import LandscapeSpec, landscape_caption, random_landscape_spec
from motionkit.data.world.landscape_render import render_landscape
from motionkit.data.world.pattern import WorldSpec, pattern_caption, random_pattern_spec, render_pattern

KINDS = ("landscape", "pattern")
LANDSCAPE_SHARE = 0.6  # of random clips, when both kinds are drawn

Spec = Union[WorldSpec, LandscapeSpec]


def random_spec(
    rng: np.random.Generator,
    *,
    style: str = "natural",
    frames: int = 16,
    size: int = 64,
    kinds: tuple[str, ...] = KINDS,
) -> Spec:
    """A random clip of one of ``kinds`` (60% landscapes when both). With ``kinds=("pattern",)`` the draws
    are exactly those of the pattern-only world: its seeds give the clips they always gave."""
    check_style(style)
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"scene kinds {sorted(unknown) or '()'} are not among {', '.join(KINDS)}")
    if len(kinds) == 1:
        kind = kinds[0]
    else:
        kind = "landscape" if rng.random() < LANDSCAPE_SHARE else "pattern"
    draw = random_landscape_spec if kind == "landscape" else random_pattern_spec
    return draw(rng, style=style, frames=frames, size=size)


def scene_kind(spec: Spec) -> str:
    return "landscape" if isinstance(spec, LandscapeSpec) else "pattern"


@overload
def render_clip(spec: Spec, maps: Literal[False] = False) -> np.ndarray: ...
@overload
def render_clip(spec: Spec, maps: Literal[True]) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...


def render_clip(spec: Spec, maps: bool = False):
    """uint8 ``[F, H, W, 3]`` (RGB) of ``spec``; the same spec always gives the same bytes.

    With ``maps``, also ``{"depth": ..., "edges": ...}``, uint8 ``[F, H, W]`` each, from the same geometry:
    depth is nearness (0 far, 255 near), edges are 255 on both sides of every boundary between layers or
    objects (lines 2 px wide), 0 elsewhere. Rain and snow are in the pixels but not in the maps."""
    check_style(spec.style)
    render = render_landscape if isinstance(spec, LandscapeSpec) else render_pattern
    frames, depth, edges = render(spec, maps=maps)
    if not maps:
        return frames
    return frames, {"depth": depth, "edges": edges}


def render_maps(spec: Spec) -> dict[str, np.ndarray]:
    """Only the maps of ``render_clip(spec, maps=True)``."""
    return render_clip(spec, maps=True)[1]


def caption(spec: Spec) -> str:
    """The clip in words, from its parameters: e.g. ``"a red ball bouncing on a green lawn under a blue sky,
    camera panning left"`` or ``"a red ball bouncing over a plain blue background, static camera"``."""
    return landscape_caption(spec) if isinstance(spec, LandscapeSpec) else pattern_caption(spec)

"""Landscape scenes: a sky by time of day, the sun or the moon, a sea with moving waves or a lawn (before
hills), drifting clouds, rain or snow, swaying trees, balls, boats and flying things, and a camera.

Geometry: the ground is a flat plane seen by a pinhole camera, so a row's nearness (inverse distance) grows
linearly from the horizon down; a thing standing on the ground takes the nearness of the row it stands on,
and its size and its parallax scale with it. A pan slides the camera sideways (a layer moves by the pan
times its nearness: the lawn under the camera moves most, the sun hardly at all); a zoom magnifies the
whole view about its centre. Sky things (sun, clouds, hills, fliers) sit at fixed nearness, far to near.
The depth map is that nearness; the edges are the boundaries between what owns each pixel. The pixels
are painted by ``motionkit.data.world.landscape_render``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from motionkit.data.world.common import COLOURS, Camera, camera_for, camera_words

TIMES = ("day", "dusk", "night")
GROUNDS = ("sea", "lawn", "hills")
WEATHERS = ("clear", "rain", "snow")
FLIERS = ("bird", "plane", "balloon")
LANDSCAPE_MOVES = ("static", "pan left", "pan right", "zoom in", "zoom out")

# Nearness (0 = infinitely far, 1 = the bottom row of the ground): the depth map's values.
SUN_NEARNESS, CLOUD_NEARNESS, HILL_NEARNESS, FLIER_NEARNESS = 0.04, 0.1, (0.14, 0.17), 0.19
HORIZON_NEARNESS = 0.2  # the ground at the horizon row: the far edge of the sea or lawn
_COUNTS = {1: "a", 2: "two", 3: "three"}


@dataclass(frozen=True)
class Light:
    """The sun or the moon: centre (x, y) at frame 0 and radius, fractions of the frame; ``sink`` is its
    downward speed per frame (negative: rising)."""

    kind: str
    position: tuple[float, float]
    size: float
    sink: float = 0.0


@dataclass(frozen=True)
class Cloud:
    position: tuple[float, float]
    size: float
    puff_seed: int = 0  # the layout of its puffs


@dataclass(frozen=True)
class Tree:
    """A tree standing at screen ``x`` (frame 0) on the ground row of ``nearness``; ``sway``: crown swing."""

    x: float
    nearness: float
    height: float  # at nearness 1, fraction of the frame
    kind: str = "round"  # or "pine"
    sway: float = 0.0
    phase: float = 0.0


@dataclass(frozen=True)
class Ball:
    """A ball on the ground: ``velocity`` along it (screen fractions per frame at rest camera), ``hop`` the
    bounce height at nearness 1 (0: it rolls), ``period`` frames per bounce."""

    colour: str
    x: float
    nearness: float
    size: float
    velocity: float = 0.0
    hop: float = 0.0
    period: float = 8.0
    phase: float = 0.0


@dataclass(frozen=True)
class Boat:
    colour: str  # the sail
    x: float
    nearness: float
    velocity: float = 0.0


@dataclass(frozen=True)
class Flier:
    """A bird (``count`` of them in a flock), plane or balloon in the sky."""

    kind: str
    colour: str
    position: tuple[float, float]
    velocity: tuple[float, float]
    count: int = 1
    phase: float = 0.0


@dataclass(frozen=True)
class LandscapeSpec:
    time: str
    ground: str
    horizon: float  # row of the horizon, fraction of the frame from the top
    light: Light | None = None
    clouds: tuple[Cloud, ...] = ()
    cloud_drift: float = 0.0
    rough: bool = False  # the sea's waves
    weather: str = "clear"
    weather_seed: int = 0
    hill_seed: int = 0
    trees: tuple[Tree, ...] = ()
    balls: tuple[Ball, ...] = ()
    boats: tuple[Boat, ...] = ()
    fliers: tuple[Flier, ...] = ()
    camera: Camera = field(default_factory=Camera)
    frames: int = 16
    size: int = 64
    style: str = "natural"


# -- drawing the spec -------------------------------------------------------------------------------


def ground_row(spec: LandscapeSpec, nearness: float) -> float:
    """The screen row (fraction of the frame) of the ground at ``nearness``."""
    return spec.horizon + (nearness - HORIZON_NEARNESS) / (1 - HORIZON_NEARNESS) * (1 - spec.horizon)


def random_landscape_spec(
    rng: np.random.Generator, *, style: str = "natural", frames: int = 16, size: int = 64
) -> LandscapeSpec:
    """A random landscape; every one moves (waves, clouds, weather, things, or else the camera). The draws do
    not depend on ``frames`` or ``size``: frame 0 of a seed is the same at any length."""
    time = str(rng.choice(TIMES, p=[0.45, 0.35, 0.2]))
    ground = str(rng.choice(GROUNDS))
    horizon = float(rng.uniform(0.45, 0.62))
    weather = str(rng.choice(WEATHERS, p=[0.76, 0.12, 0.12]))
    move = str(rng.choice(LANDSCAPE_MOVES, p=[0.4, 0.15, 0.15, 0.15, 0.15]))
    camera = camera_for(move, float(rng.uniform(0.02, 0.04) if move.startswith("pan") else rng.uniform(0.03, 0.05)))
    pan = camera.pan[0]

    light = None
    if weather == "clear" and rng.random() < {"day": 0.7, "dusk": 0.9, "night": 0.85}[time]:
        kind = "moon" if time == "night" else "sun"
        radius = float(rng.uniform(0.06, 0.09) if kind == "sun" else rng.uniform(0.045, 0.065))
        motion = str(rng.choice(["still", "sinking", "rising"], p={"dusk": [0.25, 0.6, 0.15]}.get(time, [0.5, 0.25, 0.25])))
        speed = float(rng.uniform(0.018, 0.03))
        if motion == "rising":  # from just below the horizon
            y = horizon + radius * 0.3
        elif time == "dusk" or motion == "sinking":
            y = float(rng.uniform(horizon - 0.25, horizon - 0.1))
        else:
            y = float(rng.uniform(0.12, horizon - 0.18))
        sink = {"still": 0.0, "sinking": speed, "rising": -speed}[motion]
        light = Light(kind, (float(rng.uniform(0.2, 0.8)), y), radius, sink)

    n_clouds = int(rng.integers(3, 6)) if weather != "clear" else int(rng.choice([0, 1, 2, 3], p=[0.25, 0.25, 0.3, 0.2]))
    clouds = tuple(
        Cloud((float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.08, horizon - 0.15))), float(rng.uniform(0.07, 0.12)),
              int(rng.integers(0, 2**31)))
        for _ in range(n_clouds)
    )
    drift = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.015, 0.03)) if clouds else 0.0

    trees: list[Tree] = []
    balls: list[Ball] = []
    boats: list[Boat] = []
    if ground == "sea":
        if rng.random() < 0.45:
            v = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.015, 0.03))
            sail = str(rng.choice(["white", "red", "yellow", "orange"]))
            nearness = 0.45 + 0.2 * float(rng.random())
            boats.append(Boat(sail, _start_x(rng, v - pan * nearness), nearness, v))
    else:
        wind = rng.random() < 0.75
        for _ in range(int(rng.choice([0, 1, 2, 3], p=[0.4, 0.25, 0.2, 0.15]))):
            trees.append(Tree(
                float(rng.uniform(0.05, 0.95)), float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.5, 0.75)),
                str(rng.choice(["round", "pine"])), float(rng.uniform(0.06, 0.1)) if wind else 0.0,
                float(rng.uniform(0, 2 * math.pi)),
            ))
        n_balls = int(rng.choice([0, 1, 2], p=[0.3, 0.55, 0.15] if ground == "lawn" else [0.6, 0.35, 0.05]))
        colours = [c for c in COLOURS if c != "green" and not (c == "black" and time == "night")]  # it would vanish
        for _ in range(n_balls):
            motion = str(rng.choice(["bouncing", "bouncing along", "rolling"], p=[0.35, 0.3, 0.35]))
            nearness = float(rng.uniform(0.55, 0.95))
            v = 0.0 if motion == "bouncing" else float(rng.choice([-1.0, 1.0]) * rng.uniform(0.02, 0.045))
            hop = 0.0 if motion == "rolling" else float(rng.uniform(0.18, 0.3))
            balls.append(Ball(
                str(rng.choice(colours)), _start_x(rng, v - pan * nearness), nearness, float(rng.uniform(0.08, 0.11)),
                v, hop, float(rng.uniform(6.0, 10.0)), float(rng.uniform(0, 1)),
            ))

    fliers: list[Flier] = []
    kinds = ["plane", "balloon"] if time == "night" else list(FLIERS)
    for kind in rng.choice(kinds, size=int(rng.choice([0, 1, 2], p=[0.5, 0.4, 0.1])), replace=False):  # one flock at most
        kind = str(kind)
        y = float(rng.uniform(0.1, horizon - 0.12))
        if kind == "balloon":
            colour = str(rng.choice(["red", "orange", "yellow", "blue", "purple"]))
            velocity = (float(rng.uniform(-0.01, 0.01)), -float(rng.uniform(0.015, 0.03)))
            y = float(rng.uniform(horizon - 0.15, horizon - 0.05))
        else:
            colour = "black" if kind == "bird" else str(rng.choice(["white", "red"]))
            velocity = (float(rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.055)), float(rng.uniform(-0.005, 0.005)))
        x = _start_x(rng, velocity[0] - pan * FLIER_NEARNESS)
        fliers.append(Flier(kind, colour, (x, y), velocity, int(rng.integers(1, 4)) if kind == "bird" else 1,
                            float(rng.uniform(0, 2 * math.pi))))

    spec = LandscapeSpec(
        time, ground, horizon, light, clouds, drift, bool(rng.random() < 0.4), weather, int(rng.integers(0, 2**31)),
        int(rng.integers(0, 2**31)), tuple(trees), tuple(balls), tuple(boats), tuple(fliers), camera, frames, size, style,
    )
    if camera.move == "static" and not _moves_by_itself(spec):
        # Nothing would move: the camera does, so every clip teaches motion.
        move = str(rng.choice(LANDSCAPE_MOVES[1:]))
        spec = _replace_camera(spec, camera_for(move, 0.03 if move.startswith("pan") else 0.04))
    return spec


def _start_x(rng: np.random.Generator, screen_velocity: float) -> float:
    """A start that keeps a thing moving at ``screen_velocity`` on screen for about 16 frames."""
    if abs(screen_velocity) < 1e-9:
        return float(rng.uniform(0.2, 0.8))
    return 0.5 - math.copysign(min(0.35, abs(screen_velocity) * 7.5), screen_velocity) + float(rng.uniform(-0.05, 0.05))


def _moves_by_itself(spec: LandscapeSpec) -> bool:
    return bool(
        spec.ground == "sea" or spec.clouds or spec.weather != "clear" or spec.balls or spec.fliers or spec.boats
        or (spec.light and spec.light.sink)
    )  # swaying trees alone are too little: the far ones move a pixel


def _replace_camera(spec: LandscapeSpec, camera: Camera) -> LandscapeSpec:
    from dataclasses import replace

    return replace(spec, camera=camera)


# -- words -----------------------------------------------------------------------------------------


def _side(velocity: float) -> str:
    return "left" if velocity < 0 else "right"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _subjects(spec: LandscapeSpec) -> list[tuple[str, str]]:
    """(phrase, the preposition that ties it to the ground) for every thing that acts, main one first."""
    out = []
    for ball in spec.balls:
        if ball.hop:
            action = f"bouncing {_side(ball.velocity)}" if ball.velocity else "bouncing"
        else:
            action = f"rolling {_side(ball.velocity)}"
        out.append((f"{_article(ball.colour)} {ball.colour} ball {action}", "on"))
    for boat in spec.boats:
        out.append((f"{_article(boat.colour)} {boat.colour} boat sailing {_side(boat.velocity)}", "on"))
    for flier in spec.fliers:
        if flier.kind == "bird":
            noun = "bird" if flier.count == 1 else "birds"
            out.append((f"{_COUNTS[flier.count]} {noun} flying {_side(flier.velocity[0])}", "over"))
        elif flier.kind == "plane":
            out.append((f"{_article(flier.colour)} {flier.colour} plane flying {_side(flier.velocity[0])}", "over"))
        else:
            out.append((f"{_article(flier.colour)} {flier.colour} balloon rising", "over"))
    light = spec.light
    if light is not None:
        if light.sink > 0:
            out.append((f"the {light.kind} sinking", "into" if spec.ground == "sea" else "behind"))
        elif light.sink < 0:
            out.append((f"the {light.kind} rising", "over"))
        elif out:
            out.append((f"the {light.kind} shining", "above"))
        else:
            out.append((f"the {light.kind}", "above"))
    return out


def landscape_caption(spec: LandscapeSpec) -> str:
    """E.g. ``"the sun sinking into a calm sea at dusk, gentle waves, warm light, clouds drifting right, static camera"``."""
    sea = f"a {'rough' if spec.rough else 'calm'} sea"
    place = {"sea": sea, "lawn": "a green lawn", "hills": "green hills"}[spec.ground]
    if spec.time == "day":
        when = "under a grey sky" if spec.weather != "clear" else "on a sunny day" if spec.light else "under a blue sky"
    elif spec.time == "dusk" and spec.light is not None and spec.light.sink < 0:
        when = "at dawn"  # a sun rising in the dusk colours is a sunrise
    else:
        when = f"at {spec.time}"
    subjects = _subjects(spec)
    main = f"{subjects[0][0]} {subjects[0][1]} {place} {when}" if subjects else f"{place} {when}"
    parts = [main, *(phrase for phrase, _ in subjects[1:])]
    if spec.ground == "sea":
        parts.append("rolling waves" if spec.rough else "gentle waves")
    if spec.time == "dusk" and spec.light is not None:  # at dawn too
        parts.append("warm light")
    if spec.clouds:
        parts.append(f"{'clouds' if len(spec.clouds) > 1 else 'a cloud'} drifting {_side(spec.cloud_drift)}")
    if spec.trees:
        trees = f"{_COUNTS[len(spec.trees)]} {'tree' if len(spec.trees) == 1 else 'trees'}"
        parts.append(f"{trees} swaying" if spec.trees[0].sway else trees)
    if spec.weather != "clear":
        parts.append(f"{spec.weather} falling")
    parts.append(camera_words(spec.camera))
    return ", ".join(parts)

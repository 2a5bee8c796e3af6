"""Pattern scenes: textured backgrounds with moving and bouncing objects, and a camera that pans or zooms.

Geometry: objects live in screen space (fractions of the frame) and bounce off the frame's edges; the
background lives on a periodic canvas the camera looks at, so a pan scrolls it and a zoom scales it. For the
maps the background is a wall at one distance and each object a flat card in front of the ones drawn before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from motionkit.data.world.common import CAMERA_MOVES, COLOURS, Camera, Layers, camera_for, camera_words, neon_colour, posterize

SHAPES = ("ball", "square", "triangle", "ring")
BACKGROUNDS = ("plain", "striped", "checkered", "dotted", "cloudy")

_CANVAS = 4.0  # background canvas side, in frame widths: a pan never shows its seam
_PERIOD = 16  # texture period on the canvas, in canvas pixels per frame width / _CANVAS


@dataclass(frozen=True)
class Thing:
    """A moving object. ``position``/``size``/``velocity`` are fractions of the frame (velocity per frame)."""

    shape: str
    colour: str
    position: tuple[float, float]  # centre (x, y) at frame 0
    size: float  # radius
    velocity: tuple[float, float]
    bounce: bool = True  # reflect off the frame's edges; otherwise fly through


@dataclass(frozen=True)
class Background:
    kind: str
    colours: tuple[str, str]  # (main, accent)
    angle: float = 0.0  # stripe direction, degrees
    texture_seed: int = 0  # the cloud and dot layout


@dataclass(frozen=True)
class WorldSpec:
    background: Background
    things: tuple[Thing, ...]
    camera: Camera = field(default_factory=Camera)
    frames: int = 16
    size: int = 64
    style: str = "natural"


# -- drawing the spec -------------------------------------------------------------------------------


def random_pattern_spec(rng: np.random.Generator, *, style: str = "natural", frames: int = 16, size: int = 64) -> WorldSpec:
    """A random pattern clip: one background, 1-3 objects, one camera move (a third of clips keep still)."""
    names = list(COLOURS)
    main, accent = rng.choice(names, size=2, replace=False)
    background = Background(
        kind=str(rng.choice(BACKGROUNDS)),
        colours=(str(main), str(accent)),
        angle=float(rng.choice([0.0, 45.0, 90.0, 135.0])),
        texture_seed=int(rng.integers(0, 2**31)),
    )
    things = []
    for _ in range(int(rng.integers(1, 4))):
        # An object never shares the background's main colour: it would vanish.
        colour = str(rng.choice([c for c in names if c != main]))
        speed = float(rng.uniform(0.012, 0.045))
        heading = float(rng.uniform(0, 2 * math.pi))
        still = rng.random() < 0.15
        things.append(
            Thing(
                shape=str(rng.choice(SHAPES)),
                colour=colour,
                position=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8))),
                size=float(rng.uniform(0.08, 0.16)),
                velocity=(0.0, 0.0) if still else (speed * math.cos(heading), speed * math.sin(heading)),
                bounce=bool(rng.random() < 0.6),
            )
        )
    move = str(rng.choice(CAMERA_MOVES, p=[0.34, 0.11, 0.11, 0.11, 0.11, 0.11, 0.11]))
    return WorldSpec(background, tuple(things), camera_for(move, float(rng.uniform(0.015, 0.04))), frames, size, style)


# -- words -----------------------------------------------------------------------------------------


def _heading(velocity: tuple[float, float]) -> str:
    vx, vy = velocity
    if math.hypot(vx, vy) < 1e-6:
        return ""
    # Eight compass words; screen y grows downwards.
    names = ["right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right"]
    return names[int(round(math.atan2(vy, vx) / (math.pi / 4))) % 8]


def describe_thing(thing: Thing) -> str:
    heading = _heading(thing.velocity)
    if not heading:
        action = "resting"
    elif thing.bounce:
        action = "bouncing"
    else:
        action = f"moving {heading}"
    article = "an" if thing.colour[0] in "aeiou" else "a"
    return f"{article} {thing.colour} {thing.shape} {action}"


def pattern_caption(spec: WorldSpec) -> str:
    """E.g. ``"a red ball bouncing and a green square moving up over a striped blue background, camera panning left"``."""
    subjects = " and ".join(describe_thing(t) for t in spec.things)
    bg = spec.background
    if bg.kind == "plain":
        ground = f"a plain {bg.colours[0]} background"
    else:
        ground = f"a {bg.kind} {bg.colours[0]} and {bg.colours[1]} background"
    return f"{subjects} over {ground}, {camera_words(spec.camera)}"


# -- motion ----------------------------------------------------------------------------------------


def _reflect(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold ``x`` into ``[low, high]`` as a ball bouncing between two walls does."""
    span = high - low
    if span <= 0:
        return np.full_like(x, (low + high) / 2)
    phase = np.mod(x - low, 2 * span)
    return low + np.where(phase > span, 2 * span - phase, phase)


def object_track(thing: Thing, frames: int) -> np.ndarray:
    """``[F, 2]`` centres (fractions of the frame): straight at ``velocity``, folded at the edges if it bounces."""
    t = np.arange(frames, dtype=np.float64)[:, None]
    free = np.asarray(thing.position)[None] + t * np.asarray(thing.velocity)[None]
    if not thing.bounce:
        return free
    return np.stack([_reflect(free[:, i], thing.size, 1.0 - thing.size) for i in range(2)], axis=1)


# -- pixels ----------------------------------------------------------------------------------------


def _palette(style: str) -> dict[str, np.ndarray]:
    """Each colour name's RGB in ``style``: neon saturates and brightens, pastel mixes with white."""
    out = {}
    for name, rgb in COLOURS.items():
        c = np.asarray(rgb, np.float32)
        if style == "neon":
            c = neon_colour(c)
        elif style == "pastel":
            c = 0.45 * c + 0.55 * 255.0
        out[name] = c
    return out


def _texture(bg: Background, side: int, style: str) -> np.ndarray:
    """A periodic ``[side, side, 3]`` float texture (wraps seamlessly, so pans never show an edge)."""
    palette = _palette(style)
    main, accent = palette[bg.colours[0]], palette[bg.colours[1]]
    if style == "neon":  # neon worlds are dark: the background keeps a dim trace of its colours
        main, accent = main * 0.18, accent * 0.45
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) * (2 * math.pi / side)
    cycles = side // _PERIOD  # whole periods across the canvas keep it tileable
    if bg.kind == "plain":
        weight = np.zeros((side, side), np.float32)
    elif bg.kind == "striped":
        # Axis-aligned or diagonal stripes with an integer number of cycles along each axis; the clipped
        # steep sine gives edges about a pixel wide (anti-aliased, and still periodic).
        ax, ay = {0.0: (1, 0), 90.0: (0, 1), 45.0: (1, 1), 135.0: (1, -1)}[bg.angle]
        weight = np.clip(0.5 + 2.5 * np.sin(cycles * (ax * x + ay * y)), 0, 1)
    elif bg.kind == "checkered":
        weight = np.clip(0.5 + 4.0 * np.sin(cycles * x) * np.sin(cycles * y), 0, 1)
    elif bg.kind == "dotted":
        weight = np.clip(0.5 + 3.0 * (np.cos(cycles * x) + np.cos(cycles * y) - 1.2), 0, 1)
    elif bg.kind == "cloudy":
        # Low-pass white noise in Fourier space: periodic by construction.
        rng = np.random.default_rng(bg.texture_seed)
        spectrum = np.fft.fft2(rng.normal(size=(side, side)))
        f = np.fft.fftfreq(side)[:, None] ** 2 + np.fft.fftfreq(side)[None] ** 2
        smooth = np.real(np.fft.ifft2(spectrum * np.exp(-f * (side / 6.0) ** 2)))
        weight = (smooth - smooth.min()) / (np.ptp(smooth) + 1e-6)
    else:
        raise ValueError(f"background {bg.kind!r} is not one of {', '.join(BACKGROUNDS)}")
    weight = weight.astype(np.float32)
    return main[None, None] * (1 - weight[..., None]) + accent[None, None] * weight[..., None]


def _view(texture: np.ndarray, camera: Camera, t: int, size: int) -> np.ndarray:
    """The frame the camera sees at time ``t``: a wrapped affine window of the canvas."""
    import cv2

    side = texture.shape[0]
    scale = side / _CANVAS / size  # canvas pixels per frame pixel at zoom 1
    zoom = camera.zoom**t
    cx = side / 2 + camera.pan[0] * t * size * scale
    cy = side / 2 + camera.pan[1] * t * size * scale
    s = scale / zoom
    # Maps frame pixel (u, v) to canvas (cx + s (u - size/2), cy + s (v - size/2)).
    matrix = np.float32([[s, 0, cx - s * size / 2], [0, s, cy - s * size / 2]])
    return cv2.warpAffine(
        texture, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_WRAP
    )


def _shape_mask(thing: Thing, centre: np.ndarray, radius: float, size: int) -> np.ndarray:
    """Anti-aliased coverage ``[size, size]`` in [0, 1] of one object (sub-pixel positions via ``shift``)."""
    import cv2

    shift = 4
    one = 1 << shift
    mask = np.zeros((size, size), np.uint8)
    cx, cy = centre * size
    r = radius * size
    if thing.shape in ("ball", "ring"):
        cv2.circle(mask, (int(cx * one), int(cy * one)), int(r * one), 255, -1, cv2.LINE_AA, shift)
        if thing.shape == "ring":
            cv2.circle(mask, (int(cx * one), int(cy * one)), int(0.55 * r * one), 0, -1, cv2.LINE_AA, shift)
    else:
        if thing.shape == "square":
            pts = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
        elif thing.shape == "triangle":
            pts = [(cx, cy - r), (cx + r * 0.95, cy + r * 0.75), (cx - r * 0.95, cy + r * 0.75)]
        else:
            raise ValueError(f"shape {thing.shape!r} is not one of {', '.join(SHAPES)}")
        poly = np.array([[int(px * one), int(py * one)] for px, py in pts], np.int32)
        cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA, shift)
    return mask.astype(np.float32) / 255.0


_WALL, _FIRST_CARD, _CARD_STEP = 0.25, 0.55, 0.15  # nearness of the background and of each object in turn


def render_pattern(spec: WorldSpec, maps: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """uint8 RGB ``[F, H, W, 3]`` of ``spec`` and, with ``maps``, its uint8 depth and edges ``[F, H, W]``."""
    import cv2

    size = spec.size
    texture = _texture(spec.background, int(_CANVAS * size), spec.style)
    palette = _palette(spec.style)
    tracks = [object_track(thing, spec.frames) for thing in spec.things]
    frames = np.empty((spec.frames, size, size, 3), np.uint8)
    depth = np.empty((spec.frames, size, size), np.uint8) if maps else None
    edges = np.empty((spec.frames, size, size), np.uint8) if maps else None
    for t in range(spec.frames):
        layers = Layers(_view(texture, spec.camera, t, size), _WALL, maps=maps)
        glow = np.zeros_like(layers.image)
        for i, (thing, track) in enumerate(zip(spec.things, tracks)):
            radius = thing.size * spec.camera.zoom**t
            alpha = _shape_mask(thing, track[t], radius, size)
            colour = palette[thing.colour]
            if spec.style == "natural":
                # A soft top-left light: shading tells flat colour from an object.
                light = np.linspace(1.1, 0.85, size, dtype=np.float32)
                colour = colour[None, None] * (light[:, None, None] * light[None, :, None]) ** 0.5
            glow += layers.paint(alpha, colour, _FIRST_CARD + _CARD_STEP * i)
        image = layers.image
        if spec.style == "neon":
            image = posterize(image + 0.8 * cv2.GaussianBlur(glow, (0, 0), size / 24))
        frames[t] = np.clip(image, 0, 255).round().astype(np.uint8)
        if maps:
            depth[t], edges[t] = layers.depth_and_edges()
    return frames, depth, edges

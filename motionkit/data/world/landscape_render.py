"""Landscape pixels and maps: a frame painted back to front (sky, sun or moon, clouds, hills, fliers, the
ground plane, what stands on it nearest last, then rain or snow), each layer with its nearness and owner for
the depth and edge maps. The geometry is in ``motionkit.data.world.landscape``."""

from __future__ import annotations

import math

import numpy as np

from motionkit.data.world.common import COLOURS, Layers, neon_colour, posterize
from motionkit.data.world.landscape import (
    CLOUD_NEARNESS,
    FLIER_NEARNESS,
    HILL_NEARNESS,
    HORIZON_NEARNESS,
    SUN_NEARNESS,
    Ball,
    Boat,
    Cloud,
    Flier,
    LandscapeSpec,
    Light,
    Tree,
    ground_row,
)

_TREE_PERIOD, _WING_PERIOD, _BOB_PERIOD = 12.0, 5.0, 8.0  # frames per sway, wing beat, boat bob
_CLOUD_SPAN = (-0.4, 1.4)  # clouds wrap around this screen interval, off screen either side
_SKIES = {  # (top, horizon) RGB
    "day": ((70, 130, 215), (175, 210, 240)),
    "dusk": ((60, 50, 120), (250, 150, 80)),
    "night": ((8, 12, 35), (35, 45, 90)),
}
_TINTS = {"day": (1.0, 1.0, 1.0), "dusk": (0.95, 0.72, 0.62), "night": (0.35, 0.4, 0.62)}  # light on the ground
_LIGHTS = {("sun", "day"): (255, 240, 170), ("sun", "dusk"): (255, 150, 60)}
_MOON = (235, 235, 215)
_CLOUDS = {"day": (245, 245, 250), "dusk": (235, 160, 150), "night": (75, 80, 100)}
_GREY = np.float32([150, 152, 160])  # an overcast sky (rain, snow)
_SEA = ((70, 130, 190), (25, 75, 150))  # far, near
_LAWN = ((95, 160, 85), (55, 150, 50))
_HILL_COLOURS = ((80, 135, 105), (60, 140, 70))  # far, near
_TRUNK, _CROWN, _PINE, _HULL = (110, 75, 40), (40, 125, 50), (30, 100, 60), (90, 55, 35)


class _View:
    """One frame's camera: maps frame pixels to screen coordinates (fractions of the unmoved view) and
    draws anti-aliased shapes given in screen coordinates. ``pan`` slides the camera sideways (parallax);
    a vertical pan tilts it (random landscapes never tilt, but a spec may ask)."""

    _SHIFT = 4

    def __init__(self, spec: LandscapeSpec, t: int) -> None:
        self.size = spec.size
        self.zoom = spec.camera.zoom**t
        self.pan = spec.camera.pan[0] * t  # how far the camera has slid, in frame widths at nearness 1
        centres = (np.arange(self.size, dtype=np.float32) + 0.5) / self.size
        self.tilt = spec.camera.pan[1] * t  # a tilt turns the camera: the whole view shifts, no parallax
        self.cols = 0.5 + (centres - 0.5) / self.zoom  # screen x of each column
        self.rows = self.cols + self.tilt  # screen y of each row

    def px(self, x: float, y: float) -> tuple[int, int]:
        one = 1 << self._SHIFT
        s = self.size
        u = ((x - 0.5) * self.zoom + 0.5) * s * one
        v = ((y - self.tilt - 0.5) * self.zoom + 0.5) * s * one
        return int(round(u)), int(round(v))

    def length(self, r: float) -> int:
        return max(1, int(round(r * self.zoom * self.size * (1 << self._SHIFT))))

    def _mask(self) -> np.ndarray:
        return np.zeros((self.size, self.size), np.uint8)

    def circle(self, x: float, y: float, r: float) -> np.ndarray:
        import cv2

        mask = self._mask()
        cv2.circle(mask, self.px(x, y), self.length(r), 255, -1, cv2.LINE_AA, self._SHIFT)
        return mask.astype(np.float32) / 255.0

    def ellipses(self, shapes: list[tuple[float, float, float, float]]) -> np.ndarray:
        """The union of ellipses ``(x, y, half width, half height)``."""
        import cv2

        mask = self._mask()
        for x, y, ax, ay in shapes:
            axes = (self.length(ax), self.length(ay))
            cv2.ellipse(mask, self.px(x, y), axes, 0, 0, 360, 255, -1, cv2.LINE_AA, self._SHIFT)
        return mask.astype(np.float32) / 255.0

    def polygon(self, points: list[tuple[float, float]]) -> np.ndarray:
        import cv2

        mask = self._mask()
        cv2.fillPoly(mask, [np.array([self.px(x, y) for x, y in points], np.int32)], 255, cv2.LINE_AA, self._SHIFT)
        return mask.astype(np.float32) / 255.0

    def lines(self, strokes: list[list[tuple[float, float]]], thickness: float) -> np.ndarray:
        import cv2

        mask = self._mask()
        width = max(1, int(round(thickness * self.zoom * self.size)))
        pts = [np.array([self.px(x, y) for x, y in stroke], np.int32) for stroke in strokes]
        cv2.polylines(mask, pts, False, 255, width, cv2.LINE_AA, self._SHIFT)
        return mask.astype(np.float32) / 255.0


class _Look:
    """How a style paints a layer: the backdrop (sky, sea, ground, hills) and things (everything standing or
    flying in it). Neon dims the backdrop, keeps its texture's crests as glowing lines, and makes things glow."""

    def __init__(self, style: str, time: str) -> None:
        self.style = style
        self.tint = np.float32(_TINTS[time])

    def backdrop(self, colour: np.ndarray, wave: np.ndarray | float = 0.0, amount: float = 0.0) -> np.ndarray:
        """``colour`` (any shape ending in 3) modulated by a texture ``wave`` in [-1, 1] of strength ``amount``."""
        colour = np.asarray(colour, np.float32)
        wave = np.asarray(wave, np.float32)[..., None]
        if self.style == "neon":
            crest = np.clip(wave, 0, 1) ** 6 * (amount > 0)
            return colour * 0.12 + _neon_array(colour) * 0.8 * crest
        return colour * (1 + amount * wave)

    def hill(self, rgb: tuple[int, int, int]) -> np.ndarray:
        """A hill: a flat lit colour, in neon a dim glow of it."""
        colour = np.float32(rgb) * self.tint
        return neon_colour(colour) * 0.35 if self.style == "neon" else colour

    def thing(self, rgb: tuple[int, int, int] | np.ndarray, lit: bool = True) -> np.ndarray:
        colour = np.asarray(rgb, np.float32) * (self.tint if lit else 1.0)
        return neon_colour(colour) if self.style == "neon" else colour


def _neon_array(colour: np.ndarray) -> np.ndarray:
    """``neon_colour`` of every colour in an array ending in 3."""
    low, high = colour.min(-1, keepdims=True), colour.max(-1, keepdims=True)
    spread = np.maximum(high - low, 1.0)
    return np.where(high - low > 30, np.clip((colour - low) / spread * 255.0, 0, 255), colour)


def _sky(spec: LandscapeSpec, view: _View, look: _Look) -> np.ndarray:
    """``[S, 1, 3]`` sky colour per row: a gradient from the top down to the horizon (grey under rain or snow)."""
    top, bottom = (np.float32(c) for c in _SKIES[spec.time])
    if spec.weather != "clear":
        top, bottom = 0.4 * top + 0.6 * _GREY * look.tint, 0.4 * bottom + 0.6 * _GREY * look.tint
    h = np.clip(view.rows / spec.horizon, 0, 1)[:, None, None] ** 1.5
    return look.backdrop(top * (1 - h) + bottom * h)


def _light_position(light: Light, view: _View, t: int) -> tuple[float, float]:
    return light.position[0] - view.pan * SUN_NEARNESS, light.position[1] + light.sink * t


def _cloud_puffs(cloud: Cloud) -> list[tuple[float, float, float, float]]:
    """Ellipses ``(dx, dy, ax, ay)`` relative to the cloud's centre, in units of its size."""
    rng = np.random.default_rng(cloud.puff_seed)
    puffs = [(0.0, 0.15, 1.3, 0.42)]  # the flat base
    for i in range(4):
        dx = -0.8 + 1.6 * i / 3 + float(rng.uniform(-0.15, 0.15))
        r = float(rng.uniform(0.45, 0.7)) * (1.0 - 0.35 * abs(dx))
        puffs.append((dx, -0.1 - 0.4 * r + float(rng.uniform(-0.08, 0.08)), r, r * 0.9))
    return puffs


def _hill_tops(spec: LandscapeSpec, view: _View) -> list[np.ndarray]:
    """Per hill (far, near): the screen row of its top over each column."""
    rng = np.random.default_rng(spec.hill_seed)
    tops = []
    for k, nearness in enumerate(HILL_NEARNESS):
        height = float(rng.uniform(0.07, 0.12)) + 0.03 * k
        f1, p1, p2 = float(rng.uniform(0.8, 1.6)), float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi))
        x = view.cols + view.pan * nearness
        shape = 0.6 + 0.28 * np.sin(2 * math.pi * f1 * x + p1) + 0.12 * np.sin(2 * math.pi * 2.7 * x + p2)
        tops.append(spec.horizon - height * shape)
    return tops


def _ground(spec: LandscapeSpec, view: _View, look: _Look, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ground plane: coverage ``[S, S]``, colour ``[S, S, 3]`` and nearness ``[S, 1]`` of every pixel."""
    s = view.size
    ys = view.rows[:, None]
    xs = view.cols[None, :]
    coverage = np.clip((ys - spec.horizon) * s * view.zoom + 0.5, 0, 1) * np.ones((1, s), np.float32)
    nearness = HORIZON_NEARNESS + (1 - HORIZON_NEARNESS) * np.clip(ys - spec.horizon, 0, None) / (1 - spec.horizon)
    near = np.clip((nearness - HORIZON_NEARNESS) / (1 - HORIZON_NEARNESS), 0, 1)[..., None]  # 0 at the horizon, 1 at the bottom
    lateral = (xs - 0.5) / nearness + view.pan  # the plane's own x under each pixel
    far_colour, near_colour = (np.float32(c) * look.tint for c in (_SEA if spec.ground == "sea" else _LAWN))
    base = far_colour * (1 - near) + near_colour * near
    # Texture fades where its period on screen would fall under about four pixels (no shimmer).
    rows_per_unit = (1 - HORIZON_NEARNESS) / (1 - spec.horizon) / nearness**2  # d(distance)/d(screen row)
    if spec.ground == "sea":
        wavelength, speed = (0.3, 0.08) if spec.rough else (0.35, 0.05)
        distance = 1.0 / nearness
        cycles_per_px = rows_per_unit / (wavelength * s * view.zoom)
        fade = np.clip((0.28 - cycles_per_px) / 0.12, 0, 1)
        wave = np.sin(2 * math.pi * (distance + speed * t) / wavelength + 0.9 * np.sin(2 * math.pi * lateral / 1.7))
        colour = look.backdrop(base, wave * fade, 0.22 if spec.rough else 0.12)
        if spec.light is not None:
            colour = colour + _glitter(spec, view, look, t, xs, ys, wave)
    else:
        stripe = np.sin(2 * math.pi * lateral / 0.3)
        fade = np.clip((0.28 - 1.0 / (0.3 * nearness * s * view.zoom)) / 0.12, 0, 1)
        colour = look.backdrop(base, stripe * fade, 0.12)
    return coverage, colour, nearness


def _glitter(spec, view: _View, look: _Look, t: int, xs: np.ndarray, ys: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """The light's reflection: a shimmering column on the sea under it, while it is above the horizon."""
    x, y = _light_position(spec.light, view, t)
    up = np.clip((spec.horizon - y) / spec.light.size + 1, 0, 1)
    width = 0.04 + 0.12 * (ys - spec.horizon)
    column = np.exp(-(((xs - x) / width) ** 2)) * (0.45 + 0.55 * np.clip(wave, 0, 1))
    rgb = _MOON if spec.light.kind == "moon" else _LIGHTS[("sun", spec.time)]
    return look.thing(rgb, lit=False) * (0.45 * up * column)[..., None]


def _at(x: float, y: float, unit: float, offsets: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points ``offsets`` (in ``unit``s) around ``(x, y)``."""
    return [(x + dx * unit, y + dy * unit) for dx, dy in offsets]


def _draw_tree(layers: Layers, view: _View, look: _Look, spec: LandscapeSpec, tree: Tree, t: int) -> None:
    n = tree.nearness
    x = tree.x - view.pan * n
    y = ground_row(spec, n)
    height = tree.height * n
    swing = tree.sway * n * math.sin(2 * math.pi * t / _TREE_PERIOD + tree.phase)
    half = 0.09 * height
    trunk_top = y - 0.5 * height
    lean = 0.4 * swing  # the trunk bends less than the crown swings
    trunk = view.polygon([(x - half, y), (x + half, y), (x + half + lean, trunk_top), (x - half + lean, trunk_top)])
    layers.paint(trunk, look.thing(_TRUNK), n, glow=1.0)
    if tree.kind == "pine":
        crown = view.polygon(_at(x + lean, y, height, [(-0.32, -0.3), (0.32, -0.3)]) + [(x + swing, y - height)])
        layers.paint(crown, look.thing(_PINE), n, glow=1.0)
    else:
        r = 0.3 * height
        top = y - height
        crown = view.ellipses([
            (x + 0.8 * swing, top + r, r, 1.05 * r),
            (x + 0.6 * swing - 0.5 * r, top + 1.5 * r, 0.7 * r, 0.6 * r),
            (x + 0.6 * swing + 0.5 * r, top + 1.5 * r, 0.7 * r, 0.6 * r),
        ])
        layers.paint(crown, look.thing(_CROWN), n, glow=1.0)


def _draw_ball(layers: Layers, view: _View, look: _Look, spec: LandscapeSpec, ball: Ball, t: int) -> None:
    n = ball.nearness
    r = ball.size * n
    x = ball.x + ball.velocity * t - view.pan * n
    y = ground_row(spec, n)
    lift = ball.hop * n * abs(math.sin(math.pi * (t / ball.period + ball.phase))) if ball.hop else 0.0
    # Its shadow on the ground, smaller and fainter the higher it is.
    fade = 1.0 - 0.5 * lift / max(ball.hop * n, 1e-6) if ball.hop else 1.0
    shadow = view.ellipses([(x, y, 1.05 * r * fade, 0.3 * r * fade)])
    layers.image = layers.image * (1 - 0.35 * fade * shadow[..., None])
    colour = look.thing(COLOURS[ball.colour])
    cy = y - r - lift
    if spec.style == "natural":
        # Lit from the top left, as the pattern scenes' objects are.
        ys, xs = view.rows[:, None], view.cols[None, :]
        colour = colour * np.clip(1.15 - 0.18 * (ys - cy + r) / r - 0.1 * (xs - x + r) / r, 0.75, 1.15)[..., None]
    layers.paint(view.circle(x, cy, r), colour, n, glow=1.0)


def _draw_boat(layers: Layers, view: _View, look: _Look, spec: LandscapeSpec, boat: Boat, t: int) -> None:
    n = boat.nearness
    size = 0.2 * n
    x = boat.x + boat.velocity * t - view.pan * n
    y = ground_row(spec, n) + 0.012 * math.sin(2 * math.pi * t / _BOB_PERIOD)
    d = 1.0 if boat.velocity >= 0 else -1.0  # the bow leads
    hull = view.polygon(_at(x, y, size, [(-1, -0.3), (1, -0.3), (0.65, 0.05), (-0.75, 0.05)]))
    layers.paint(hull, look.thing(_HULL), n, glow=1.0)
    sail = view.polygon(_at(x, y, size, [(-0.05 * d, -0.4), (-0.05 * d, -1.5), (0.75 * d, -0.4)]))
    layers.paint(sail, look.thing(COLOURS[boat.colour]), n, glow=1.0)


def _draw_flier(layers: Layers, view: _View, look: _Look, flier: Flier, t: int) -> None:
    x = flier.position[0] + flier.velocity[0] * t - view.pan * FLIER_NEARNESS
    y = flier.position[1] + flier.velocity[1] * t
    d = 1.0 if flier.velocity[0] >= 0 else -1.0
    colour = look.thing(COLOURS[flier.colour], lit=flier.kind != "plane")
    if flier.kind == "bird":
        span = 0.055
        strokes = []
        for k, (dx, dy) in enumerate([(0.0, 0.0), (-0.1, 0.06), (-0.09, -0.06)][: flier.count]):
            flap = 0.6 * span * math.sin(2 * math.pi * t / _WING_PERIOD + flier.phase + 1.3 * k)
            bx, by = x + d * dx, y + dy
            strokes.append([(bx - span, by + flap), (bx, by + 0.2 * span), (bx + span, by + flap)])
        layers.paint(view.lines(strokes, 1.6 / 64), colour, FLIER_NEARNESS, glow=1.0)
    elif flier.kind == "plane":
        length = 0.085
        body = view.ellipses([(x, y, length, 0.2 * length)])
        wing = view.polygon(_at(x, y, length, [(0.15 * d, 0), (-0.35 * d, 0.55), (-0.55 * d, 0.55), (-0.3 * d, 0)]))
        tail = view.polygon(_at(x, y, length, [(-0.65 * d, 0), (-1.0 * d, -0.5), (-0.95 * d, 0)]))
        layers.paint(np.maximum(np.maximum(body, wing), tail), colour, FLIER_NEARNESS, glow=1.0)
    else:
        r = 0.055
        basket = view.polygon(_at(x, y, r, [(-0.28, 1.35), (0.28, 1.35), (0.28, 1.75), (-0.28, 1.75)]))
        layers.paint(basket, look.thing(_HULL), FLIER_NEARNESS, glow=1.0)
        envelope = view.ellipses([(x, y, r, 1.1 * r), (x, y + 0.75 * r, 0.45 * r, 0.45 * r)])
        layers.paint(envelope, colour, FLIER_NEARNESS, glow=1.0)


def _weather(spec: LandscapeSpec, view: _View, t: int) -> tuple[np.ndarray, np.float32] | None:
    """Rain streaks or snow flakes (screen space, near the lens: not in the maps) and their colour."""
    if spec.weather == "clear":
        return None
    rng = np.random.default_rng(spec.weather_seed)
    if spec.weather == "rain":
        n = 36
        x0, y0, v = rng.uniform(0, 1, n), rng.uniform(0, 1, n), rng.uniform(0.08, 0.11, n)
        y = np.mod(y0 + v * t, 1.2) - 0.1
        x = np.mod(x0 - 0.25 * v * t, 1.0)
        strokes = [[(float(a), float(b)), (float(a) + 0.015, float(b) - 0.06)] for a, b in zip(x, y)]
        return view.lines(strokes, 1.0 / 64) * 0.55, np.float32([200, 210, 230])
    n = 40
    x0, y0, v, phase = rng.uniform(0, 1, n), rng.uniform(0, 1, n), rng.uniform(0.01, 0.02, n), rng.uniform(0, 2 * math.pi, n)
    y = np.mod(y0 + v * t, 1.1) - 0.05
    x = x0 + 0.02 * np.sin(2 * math.pi * t / 10 + phase)
    return view.ellipses([(float(a), float(b), 0.011, 0.011) for a, b in zip(x, y)]) * 0.9, np.float32([245, 245, 250])


def _stars(spec: LandscapeSpec, view: _View) -> np.ndarray:
    rng = np.random.default_rng(spec.weather_seed)
    points = [(float(rng.uniform(0, 1)), float(rng.uniform(0, spec.horizon - 0.1))) for _ in range(14)]
    import cv2

    mask = np.zeros((view.size, view.size), np.uint8)
    for x, y in points:
        cv2.circle(mask, view.px(x, y), view.length(0.5 / 64), 255, -1, cv2.LINE_AA, view._SHIFT)
    return mask.astype(np.float32) / 255.0


def render_landscape(spec: LandscapeSpec, maps: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """uint8 RGB ``[F, H, W, 3]`` of ``spec`` and, with ``maps``, its uint8 depth and edges ``[F, H, W]``."""
    import cv2

    s = spec.size
    look = _Look(spec.style, spec.time)
    frames = np.empty((spec.frames, s, s, 3), np.uint8)
    depth = np.empty((spec.frames, s, s), np.uint8) if maps else None
    edges = np.empty((spec.frames, s, s), np.uint8) if maps else None
    ground_things = sorted([*spec.trees, *spec.balls, *spec.boats], key=lambda thing: thing.nearness)
    draw = {Tree: _draw_tree, Ball: _draw_ball, Boat: _draw_boat}
    for t in range(spec.frames):
        view = _View(spec, t)
        layers = Layers(np.broadcast_to(_sky(spec, view, look), (s, s, 3)), 0.0, maps=maps, glows=spec.style == "neon")
        if spec.time == "night" and spec.weather == "clear":
            layers.image = layers.image + _stars(spec, view)[..., None] * look.thing((150, 150, 140), lit=False) * 0.8
        light = spec.light
        if light is not None:
            x, y = _light_position(light, view, t)
            rgb = look.thing(_MOON if light.kind == "moon" else _LIGHTS[("sun", spec.time)], lit=False)
            ys, xs = view.rows[:, None], view.cols[None, :]
            if spec.style != "neon":  # neon's glow is its halo
                halo = np.exp(-(((xs - x) ** 2 + (ys - y) ** 2) / (2.2 * light.size) ** 2))
                layers.image = layers.image + rgb * (0.35 * halo)[..., None]
            layers.paint(view.circle(x, y, light.size), rgb, SUN_NEARNESS, glow=1.0)
        cloud_rgb = look.thing(_GREY * 1.05 if spec.weather != "clear" else np.float32(_CLOUDS[spec.time]), lit=False)
        for cloud in spec.clouds:
            low, high = _CLOUD_SPAN
            cx = low + np.mod(cloud.position[0] + spec.cloud_drift * t - view.pan * CLOUD_NEARNESS - low, high - low)
            cy = cloud.position[1]
            unit = cloud.size
            puffs = [(cx + dx * unit, cy + dy * unit, ax * unit, ay * unit) for dx, dy, ax, ay in _cloud_puffs(cloud)]
            shade = np.clip(1.05 - 0.25 * (view.rows - (cy - cloud.size)) / (1.5 * cloud.size), 0.8, 1.05)[:, None, None]
            layers.paint(view.ellipses(puffs), cloud_rgb * shade, CLOUD_NEARNESS, glow=0.5)
        if spec.ground == "hills":
            for top, nearness, rgb in zip(_hill_tops(spec, view), HILL_NEARNESS, _HILL_COLOURS):
                coverage = np.clip((view.rows[:, None] - top[None, :]) * s * view.zoom + 0.5, 0, 1)
                layers.paint(coverage, look.hill(rgb), nearness)
        for flier in spec.fliers:
            _draw_flier(layers, view, look, flier, t)
        coverage, colour, nearness = _ground(spec, view, look, t)
        layers.paint(coverage, colour, nearness)
        for thing in ground_things:
            draw[type(thing)](layers, view, look, spec, thing, t)
        precipitation = _weather(spec, view, t)
        if precipitation is not None:
            alpha, rgb = precipitation
            layers.image = layers.image * (1 - alpha[..., None]) + look.thing(rgb, lit=False) * alpha[..., None]
        image = layers.image
        if spec.style == "neon":
            image = posterize(image + 0.8 * cv2.GaussianBlur(layers.glow, (0, 0), s / 24))
        elif spec.style == "pastel":
            image = 0.45 * image + 0.55 * 255.0
        frames[t] = np.clip(image, 0, 255).round().astype(np.uint8)
        if maps:
            depth[t], edges[t] = layers.depth_and_edges()
    return frames, depth, edges

"""What the world's scene kinds share: colour names, styles, the camera, and the layer canvas that paints
pixels together with the label and nearness of every pixel, from which the depth and edge maps come."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {  # RGB
    "red": (220, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (235, 215, 40),
    "green": (50, 170, 60),
    "blue": (40, 80, 210),
    "purple": (140, 60, 190),
    "white": (235, 235, 235),
    "black": (25, 25, 25),
}
CAMERA_MOVES = ("static", "pan left", "pan right", "pan up", "pan down", "zoom in", "zoom out")
STYLES = ("natural", "neon", "pastel")
MAPS = ("depth", "edges")


@dataclass(frozen=True)
class Camera:
    """``pan``: view motion per frame, fractions of the frame; ``zoom``: scale factor per frame (1 = none)."""

    pan: tuple[float, float] = (0.0, 0.0)
    zoom: float = 1.0

    @property
    def move(self) -> str:
        if self.zoom > 1.0:
            return "zoom in"
        if self.zoom < 1.0:
            return "zoom out"
        dx, dy = self.pan
        if dx == dy == 0:
            return "static"
        if abs(dx) >= abs(dy):
            return "pan left" if dx < 0 else "pan right"
        return "pan up" if dy < 0 else "pan down"


def camera_for(move: str, speed: float = 0.025) -> Camera:
    """The camera of a move named in ``CAMERA_MOVES``; ``speed`` is the pan per frame (zoom: 1 +/- speed/2)."""
    pans = {"pan left": (-speed, 0.0), "pan right": (speed, 0.0), "pan up": (0.0, -speed), "pan down": (0.0, speed)}
    if move == "static":
        return Camera()
    if move in pans:
        return Camera(pan=pans[move])
    if move in ("zoom in", "zoom out"):
        return Camera(zoom=1.0 + speed / 2 if move == "zoom in" else 1.0 - speed / 2)
    raise ValueError(f"camera move {move!r} is not one of {', '.join(CAMERA_MOVES)}")


def camera_words(camera: Camera) -> str:
    move = camera.move
    return "static camera" if move == "static" else "camera " + move.replace("pan", "panning").replace("zoom", "zooming")


def check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style {style!r} is not one of {', '.join(STYLES)}")


def neon_colour(rgb: np.ndarray) -> np.ndarray:
    """A colour stretched to full brightness and saturation (greys stay as they are)."""
    c = np.asarray(rgb, np.float32)
    return np.clip((c - c.min()) / max(float(np.ptp(c)), 1.0) * 255.0, 0, 255) if np.ptp(c) > 30 else c


def posterize(image: np.ndarray) -> np.ndarray:
    """Five levels per channel: the flat glowing look of the neon style."""
    return np.round(np.clip(image, 0, 255) / 64.0) * 64.0


class Layers:
    """One frame painted back to front: RGB, and for the maps the label (which layer or object owns each
    pixel: the one covering more than half of it) and its nearness (0 = infinitely far, 1 = nearest)."""

    def __init__(self, image: np.ndarray, nearness: float | np.ndarray, *, maps: bool, glows: bool = False) -> None:
        self.image = image.astype(np.float32, copy=False)
        size = image.shape[:2]
        # What glows (neon) and still shows: what is painted over stops glowing.
        self.glow = np.zeros_like(self.image) if glows else None
        self.maps = maps
        self.label = np.zeros(size, np.int16) if maps else None
        self.near = np.broadcast_to(np.float32(nearness), size).astype(np.float32) if maps else None
        self._next = 1

    def paint(self, alpha: np.ndarray, colour: np.ndarray, nearness: float | np.ndarray, glow: float = 0.0) -> np.ndarray:
        """Cover the frame by ``alpha`` ``[H, W]`` with ``colour`` (``[3]`` or ``[H, W, 3]``), glowing by
        ``glow``; returns the colour contribution."""
        a = alpha[..., None]
        self.image = self.image * (1 - a) + colour * a
        if self.glow is not None:
            self.glow = self.glow * (1 - a) + colour * (a * glow)
        if self.maps:
            owned = alpha >= 0.5
            self.label[owned] = self._next
            self.near[owned] = np.broadcast_to(np.float32(nearness), owned.shape)[owned]
            self._next += 1
        return colour * a

    def depth_and_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """uint8 depth (near = bright) and 0/255 edges: both sides of every label boundary (2 px lines)."""
        depth = np.round(np.clip(self.near, 0, 1) * 255).astype(np.uint8)
        label = self.label
        edge = np.zeros(label.shape, bool)
        across = label[:, 1:] != label[:, :-1]
        down = label[1:] != label[:-1]
        edge[:, 1:] |= across
        edge[:, :-1] |= across
        edge[1:] |= down
        edge[:-1] |= down
        return depth, edge.astype(np.uint8) * 255

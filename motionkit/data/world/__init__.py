"""A procedural toy world: landscapes (sky, sun and moon, sea or lawn and hills, clouds, weather, trees,
balls, boats, fliers) and pattern scenes (shapes over textured backgrounds), with camera pans and zooms.

It is the training data of motionkit's tiny model family, so everything about a clip is a value (a spec)
drawn from a seeded RNG, rendered deterministically with OpenCV, and described in words by ``caption``.
Styles repaint the same world (``natural`` colours, ``neon`` glow on black, ``pastel``): a personalized
image model learns a style while the motion adapter learns how things move. ``render_clip(spec, maps=True)``
also gives exact depth and edge maps of the same geometry, for a ControlNet.

    python -m motionkit.data.world OUT --clips N [--style neon] [--seed K] [--maps depth,edges]
"""

from motionkit.data.world.common import CAMERA_MOVES, COLOURS, MAPS, STYLES, Camera, camera_for
from motionkit.data.world.dataset import main, random_specs, render_clips, write_world_dataset
from motionkit.data.world.landscape import (
    FLIERS,
    GROUNDS,
    TIMES,
    WEATHERS,
    Ball,
    Boat,
    Cloud,
    Flier,
    LandscapeSpec,
    Light,
    Tree,
)
from motionkit.data.world.pattern import BACKGROUNDS, SHAPES, Background, Thing, WorldSpec, describe_thing, object_track
from motionkit.data.world.scene import (
    KINDS,
    LANDSCAPE_SHARE,
    Spec,
    caption,
    random_spec,
    render_clip,
    render_maps,
    scene_kind,
)

__all__ = [
    "BACKGROUNDS", "CAMERA_MOVES", "COLOURS", "FLIERS", "GROUNDS", "KINDS", "LANDSCAPE_SHARE", "MAPS", "SHAPES",
    "STYLES", "TIMES", "WEATHERS",
    "Background", "Ball", "Boat", "Camera", "Cloud", "Flier", "LandscapeSpec", "Light", "Spec", "Thing", "Tree",
    "WorldSpec",
    "camera_for", "caption", "describe_thing", "main", "object_track", "random_spec", "render_clip", "render_maps",
    "random_specs", "render_clips", "scene_kind", "write_world_dataset",
]

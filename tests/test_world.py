"""The procedural world: deterministic pixels, captions that say what the spec holds, objects that move by
their velocity, styles that repaint it, and a dataset folder the training datasets read."""

from __future__ import annotations

import numpy as np
import pytest

from motionkit.data.world import (
    COLOURS,
    STYLES,
    Background,
    Camera,
    Thing,
    WorldSpec,
    camera_for,
    caption,
    object_track,
    random_spec,
    render_clip,
    write_world_dataset,
)


def single_ball(velocity=(0.03, 0.02), bounce=False, style="natural", camera=Camera()) -> WorldSpec:
    ball = Thing("ball", "red", position=(0.3, 0.4), size=0.1, velocity=velocity, bounce=bounce)
    return WorldSpec(Background("plain", ("blue", "white")), (ball,), camera, frames=8, size=64, style=style)


def centroid(frame: np.ndarray, rgb) -> np.ndarray:
    """Centre (x, y) of the pixels closest to colour ``rgb``, as fractions of the frame."""
    distance = np.abs(frame.astype(float) - np.asarray(rgb, float)).sum(-1)
    ys, xs = np.nonzero(distance < 60)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5]) / frame.shape[1]


def test_render_is_deterministic_and_shaped():
    spec = random_spec(np.random.default_rng(3), frames=6, size=48)
    first, again = render_clip(spec), render_clip(spec)
    assert first.shape == (6, 48, 48, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert random_spec(np.random.default_rng(3), frames=6, size=48) == spec


def test_objects_move_by_their_velocity():
    spec = single_ball(velocity=(0.03, 0.02))
    clip = render_clip(spec)
    track = object_track(spec.things[0], spec.frames)
    np.testing.assert_allclose(np.diff(track, axis=0), [[0.03, 0.02]] * 7, atol=1e-12)
    for t in (0, 4, 7):
        np.testing.assert_allclose(centroid(clip[t], COLOURS["red"]), track[t], atol=0.02)


def test_bouncing_objects_stay_inside_the_frame():
    thing = Thing("square", "green", position=(0.8, 0.5), size=0.1, velocity=(0.05, 0.0), bounce=True)
    track = object_track(thing, 20)
    assert track[:, 0].max() <= 0.9 + 1e-9 and track[:, 0].min() >= 0.1 - 1e-9
    assert track[3, 0] < track[2, 0]  # it came back off the right wall


def test_camera_pan_scrolls_the_background():
    stripes = Background("striped", ("blue", "white"), angle=0.0)
    spec = WorldSpec(stripes, (), camera_for("pan left", 0.03), frames=4, size=64)
    clip = render_clip(spec).astype(float)
    shift = 0.03 * 64  # content moves right when the camera pans left
    shifted = np.roll(clip[0], int(round(shift * 2)), axis=1)
    assert np.abs(shifted - clip[2]).mean() < np.abs(clip[0] - clip[2]).mean() / 2


def test_captions_match_specs():
    spec = single_ball(velocity=(0.03, 0.0), camera=camera_for("pan left"))
    assert caption(spec) == "a red ball moving right over a plain blue background, camera panning left"
    bouncing = single_ball(bounce=True, camera=camera_for("zoom in"))
    assert caption(bouncing) == "a red ball bouncing over a plain blue background, camera zooming in"
    rng = np.random.default_rng(0)
    for _ in range(20):
        spec = random_spec(rng)
        text = caption(spec)
        for thing in spec.things:
            assert f"{thing.colour} {thing.shape}" in text
        assert spec.background.colours[0] in text
        assert ("static camera" in text) == (spec.camera.move == "static")


def test_styles_repaint_the_same_world():
    rng = np.random.default_rng(5)
    spec = random_spec(rng, style="natural")
    clips = {s: render_clip(WorldSpec(spec.background, spec.things, spec.camera, spec.frames, spec.size, s)) for s in STYLES}
    for a in STYLES:
        for b in STYLES:
            if a < b:
                assert np.abs(clips[a].astype(float) - clips[b].astype(float)).mean() > 10
    with pytest.raises(ValueError, match="style"):
        random_spec(rng, style="sepia")


def test_dataset_writer_output_is_readable(tmp_path):
    from motionkit.data.datasets import VideoClipDataset
    from motionkit.video_io import read_video

    out = write_world_dataset(tmp_path / "world", n_clips=3, frames=8, size=32, style="neon", seed=1, images_per_clip=2)
    videos = sorted((out / "videos").glob("*.mp4"))
    assert len(videos) == 3 and len(list((out / "images").glob("*.png"))) == 6
    frames = read_video(videos[0])
    assert frames.shape == (8, 32, 32, 3)
    text = videos[0].with_suffix(".txt").read_text(encoding="utf-8").strip()
    assert text.startswith(("a ", "an ")) and "background" in text
    item = VideoClipDataset.from_folder(out / "videos", n_frames=4, stride=2, size=(32, 32), seed=0)[0]
    assert item["pixel_values"].shape == (4, 3, 32, 32) and "background" in item["prompt"]

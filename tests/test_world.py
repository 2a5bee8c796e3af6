"""The procedural world: deterministic pixels, captions that say what the spec holds, objects that move by
their velocity, styles that repaint it, and a dataset folder the training datasets read."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from motionkit.data.world import (
    COLOURS,
    KINDS,
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
        spec = random_spec(rng, kinds=("pattern",))
        text = caption(spec)
        for thing in spec.things:
            assert f"{thing.colour} {thing.shape}" in text
        assert spec.background.colours[0] in text
        assert ("static camera" in text) == (spec.camera.move == "static")


def test_styles_repaint_the_same_world():
    rng = np.random.default_rng(5)
    for kind in KINDS:
        spec = random_spec(rng, style="natural", kinds=(kind,))
        clips = {s: render_clip(dataclasses.replace(spec, style=s)) for s in STYLES}
        for a in STYLES:
            for b in STYLES:
                if a < b:
                    assert np.abs(clips[a].astype(float) - clips[b].astype(float)).mean() > 10, (kind, a, b)
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
    rng = np.random.default_rng(1)
    assert text == caption(random_spec(rng, style="neon", frames=8, size=32))
    item = VideoClipDataset.from_folder(out / "videos", n_frames=4, stride=2, size=(32, 32), seed=0)[0]
    assert item["pixel_values"].shape == (4, 3, 32, 32) and item["prompt"] == text


# -- landscapes, the scene mix and the maps --------------------------------------------------------

from motionkit.data.world import (  # noqa: E402
    FLIERS,
    GROUNDS,
    TIMES,
    WEATHERS,
    Ball,
    Cloud,
    LandscapeSpec,
    Light,
    Tree,
    render_maps,
    scene_kind,
)
from motionkit.data.world.landscape import SUN_NEARNESS  # noqa: E402

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def lawn_with_ball(camera=Camera(), hop=0.25, velocity=0.0, **changes) -> LandscapeSpec:
    ball = Ball("red", x=0.5, nearness=0.8, size=0.1, velocity=velocity, hop=hop, period=8.0)
    spec = LandscapeSpec("day", "lawn", horizon=0.5, balls=(ball,), camera=camera, frames=8, size=64)
    return dataclasses.replace(spec, **changes)


def sunset() -> LandscapeSpec:
    sun = Light("sun", (0.5, 0.38), 0.08, sink=0.03)
    clouds = (Cloud((0.2, 0.15), 0.08, 1), Cloud((0.7, 0.2), 0.09, 2))
    return LandscapeSpec("dusk", "sea", horizon=0.55, light=sun, clouds=clouds, cloud_drift=0.02, frames=12, size=64)


def test_the_example_seed_draws_the_shipped_example():
    """The shipped example frame and caption are frame 0 of the world clip drawn from EXAMPLE_WORLD_SEED."""
    from PIL import Image

    from motionkit.family import EXAMPLE_WORLD_SEED

    examples = ROOT / "motionkit" / "assets" / "tiny-family" / "examples"
    spec = random_spec(np.random.default_rng(EXAMPLE_WORLD_SEED), frames=1, size=64)
    assert caption(spec) == (examples / "conditioning.txt").read_text(encoding="utf-8").strip()
    np.testing.assert_array_equal(render_clip(spec)[0], np.asarray(Image.open(examples / "conditioning.png").convert("RGB")))
    with pytest.raises(ValueError, match="scene kinds"):
        random_spec(np.random.default_rng(0), kinds=("portrait",))


def test_the_mix_is_mostly_landscapes_and_deterministic():
    rng = np.random.default_rng(2)
    specs = [random_spec(rng, frames=4, size=32) for _ in range(300)]
    share = np.mean([scene_kind(s) == "landscape" for s in specs])
    assert 0.52 < share < 0.68
    again = np.random.default_rng(2)
    assert [random_spec(again, frames=4, size=32) for _ in range(300)] == specs
    landscape = next(s for s in specs if scene_kind(s) == "landscape")
    np.testing.assert_array_equal(render_clip(landscape), render_clip(landscape))
    # Frame 0 of a seed does not depend on the clip's length.
    short = random_spec(np.random.default_rng(9), frames=1, size=32, kinds=("landscape",))
    long = random_spec(np.random.default_rng(9), frames=10, size=32, kinds=("landscape",))
    np.testing.assert_array_equal(render_clip(short)[0], render_clip(long)[0])


def test_landscape_elements_appear_in_specs_and_captions():
    rng = np.random.default_rng(4)
    seen: dict[str, set] = {"time": set(), "ground": set(), "weather": set(), "flier": set(), "light": set()}
    trees = balls = boats = clouds = 0
    for _ in range(400):
        spec = random_spec(rng, kinds=("landscape",))
        text = caption(spec)
        seen["time"].add(spec.time)
        seen["ground"].add(spec.ground)
        seen["weather"].add(spec.weather)
        assert {"sea": "sea", "lawn": "green lawn", "hills": "green hills"}[spec.ground] in text
        dawn = spec.time == "dusk" and spec.light is not None and spec.light.sink < 0
        when = {"day": "sky" if not spec.light else "sunny day", "dusk": "at dawn" if dawn else "at dusk", "night": "at night"}
        assert when[spec.time] in text
        assert (f"{spec.weather} falling" in text) == (spec.weather != "clear")
        assert ("static camera" in text) == (spec.camera.move == "static")
        if spec.light:
            seen["light"].add((spec.light.kind, np.sign(spec.light.sink)))
            assert f"the {spec.light.kind}" in text
            assert ("sinking" in text) == (spec.light.sink > 0)
        for ball in spec.balls:
            assert f"{ball.colour} ball {'bouncing' if ball.hop else 'rolling'}" in text
        for boat in spec.boats:
            assert f"{boat.colour} boat sailing" in text
        for flier in spec.fliers:
            seen["flier"].add(flier.kind)
            assert flier.kind in text
        if spec.clouds:
            assert "drifting " + ("left" if spec.cloud_drift < 0 else "right") in text
        if spec.trees:
            assert "tree" in text and (("swaying" in text) == (spec.trees[0].sway > 0))
        trees, balls, boats, clouds = trees + len(spec.trees), balls + len(spec.balls), boats + len(spec.boats), clouds + len(spec.clouds)
    assert seen["time"] == set(TIMES) and seen["ground"] == set(GROUNDS) and seen["weather"] == set(WEATHERS)
    assert seen["flier"] == set(FLIERS) and len(seen["light"]) == 6 and min(trees, balls, boats, clouds) > 20


def test_captions_of_landscapes_read_as_the_apps_examples():
    assert caption(sunset()) == "the sun sinking into a calm sea at dusk, gentle waves, warm light, clouds drifting right, static camera"
    ball = lawn_with_ball(camera=camera_for("pan left"))
    assert caption(ball) == "a red ball bouncing on a green lawn under a blue sky, camera panning left"
    rolling = lawn_with_ball(hop=0.0, velocity=-0.03, light=Light("sun", (0.3, 0.2), 0.07))
    assert caption(rolling) == "a red ball rolling left on a green lawn on a sunny day, the sun shining, static camera"


def test_the_caption_vocabulary_stays_small():
    import re

    rng = np.random.default_rng(0)
    words = set()
    for _ in range(2000):
        words.update(re.findall(r"[a-z-]+", caption(random_spec(rng))))
    assert len(words) < 150


def test_maps_are_aligned_with_the_frames():
    for spec in (lawn_with_ball(camera=camera_for("zoom in", 0.04)), sunset(), random_spec(np.random.default_rng(3), frames=6)):
        frames, maps = render_clip(spec, maps=True)
        np.testing.assert_array_equal(frames, render_clip(spec))  # maps change nothing in the pixels
        for name in ("depth", "edges"):
            assert maps[name].shape == frames.shape[:3] and maps[name].dtype == np.uint8
            np.testing.assert_array_equal(maps[name], render_maps(spec)[name])
        assert set(np.unique(maps["edges"])) <= {0, 255}
        # Edges sit where the colour changes: the image gradient is far larger on them than off them.
        rgb = frames.astype(np.float32)
        gradient = np.zeros(frames.shape[:3], np.float32)
        gradient[:, :, 1:] += np.abs(np.diff(rgb, axis=2)).sum(-1)
        gradient[:, 1:] += np.abs(np.diff(rgb, axis=1)).sum(-1)
        on, off = maps["edges"] > 0, maps["edges"] == 0
        assert gradient[on].mean() > 3 * gradient[off].mean()


def test_depth_follows_the_scene_geometry():
    spec = lawn_with_ball(hop=0.0)
    frame, maps = render_clip(spec, maps=True)
    depth = maps["depth"][0].astype(int)
    assert (depth[:30] == 0).all()  # the sky is infinitely far
    ground = depth[34:, 2]  # a column the ball does not cover: nearer row by row downwards
    assert (np.diff(ground) >= 0).all() and ground[-1] > 240 and ground[0] < 80
    ball = depth == round(0.8 * 255)  # the ball takes the nearness of the ground it stands on
    ys, xs = np.nonzero(ball & (np.arange(64)[:, None] < 55))  # above the ground row of that nearness
    assert len(ys) > 60
    red = np.abs(frame[0].astype(int) - (220, 40, 40)).sum(-1) < 120
    assert red[ys, xs].mean() > 0.9  # and it is the red ball in the frame
    assert np.abs(xs.mean() + 0.5 - 32) < 1
    # The sun sinks behind the sea: less of it shows every frame, its depth below the sea's far edge.
    maps = render_maps(sunset())
    sun = [(d == round(SUN_NEARNESS * 255)).sum() for d in maps["depth"]]
    assert sun[0] > 50 and sun[-1] == 0 and all(a >= b for a, b in zip(sun, sun[1:]))


def test_a_pan_moves_near_things_more_than_far_ones():
    spec = lawn_with_ball(hop=0.0, camera=camera_for("pan right", 0.03), trees=(Tree(0.3, 0.4, 0.6),))
    maps = render_maps(spec)["depth"]

    def centre_x(t: int, nearness: float) -> float:
        return float(np.nonzero(maps[t] == round(nearness * 255))[1].mean())

    ball_shift = (centre_x(7, 0.8) - centre_x(0, 0.8)) / 7
    tree_shift = (centre_x(7, 0.4) - centre_x(0, 0.4)) / 7
    assert ball_shift == pytest.approx(-0.03 * 0.8 * 64, abs=0.2) and tree_shift == pytest.approx(-0.03 * 0.4 * 64, abs=0.2)


def test_landscapes_move_visibly_and_smoothly():
    rng = np.random.default_rng(6)
    for _ in range(30):
        spec = random_spec(rng, frames=12, kinds=("landscape",))
        clip = render_clip(spec).astype(np.float32)
        steps = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2, 3))
        assert steps.mean() > 0.3, caption(spec)
        assert steps.max() < 4 * np.median(steps) + 1.0, caption(spec)  # no frame jumps: no flicker


def test_neon_repaints_landscapes_dark_and_glowing():
    natural = render_clip(sunset())
    neon = render_clip(dataclasses.replace(sunset(), style="neon"))
    assert neon.mean() < natural.mean() - 30
    assert set(np.unique(neon)) <= {0, 64, 128, 192, 255}  # posterized


def test_dataset_writer_writes_maps_paired_by_name(tmp_path):
    from motionkit.video_io import read_video

    out = write_world_dataset(tmp_path / "world", n_clips=3, frames=4, size=32, seed=2, maps=("depth", "edges"))
    videos = sorted(p.name for p in (out / "videos").glob("*.mp4"))
    rng = np.random.default_rng(2)
    for name in videos:
        spec = random_spec(rng, frames=4, size=32)
        rgb, maps = render_clip(spec, maps=True)
        rng.choice(4, size=1, replace=False)  # the writer's draw of the frame for the image model
        for map_name in ("depth", "edges"):
            video = read_video(out / "maps" / map_name / name)
            assert video.shape == (4, 32, 32, 3)
            assert np.abs(video.astype(int) - maps[map_name][..., None]).mean() < 3
    assert sorted(p.name for p in (out / "maps" / "edges").glob("*.mp4")) == videos
    with pytest.raises(ValueError, match="normals"):
        write_world_dataset(tmp_path / "bad", n_clips=1, maps=("normals",))


def test_cli_writes_maps_and_refuses_unknown_ones(tmp_path, capsys):
    from motionkit.data.world import main

    assert main([str(tmp_path / "w"), "--clips", "2", "--frames", "3", "--size", "32", "--maps", "depth,edges"]) == 0
    for folder in ("videos", "maps/depth", "maps/edges"):
        assert len(list((tmp_path / "w" / folder).glob("clip_*.mp4"))) == 2
    with pytest.raises(SystemExit):
        main([str(tmp_path / "x"), "--clips", "1", "--maps", "depth,normals"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--maps normals" in err and "depth,edges" in err
    assert not (tmp_path / "x").exists()


def test_a_vertical_pan_tilts_the_whole_view():
    """Content moves down when the camera pans up, as in the pattern scenes; a tilt has no parallax."""
    depth = render_maps(lawn_with_ball(hop=0.0, camera=camera_for("pan up", 0.03)))["depth"]
    horizon = [int(np.argmax(d[:, 2] > 0)) for d in depth]
    assert horizon[-1] - horizon[0] == pytest.approx(0.03 * 7 * 64, abs=1.5)


def test_render_clips_renders_the_specs_random_specs_draws():
    from motionkit.data.world import random_specs, render_clips, scene_kind

    clips, captions = render_clips(3, 11, frames=4, stride=2, size=32)
    specs = random_specs(3, 11, frames=4, stride=2, size=32)
    assert [caption(spec) for spec in specs] == captions
    assert all(np.array_equal(render_clip(spec)[::2], clip) for spec, clip in zip(specs, clips))
    assert {scene_kind(spec) for spec in random_specs(3, 11, kinds=("pattern",))} == {"pattern"}

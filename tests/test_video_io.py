import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from motionkit.errors import FormatError, MotionkitError
from motionkit.utils.atomic import atomic_path, atomic_write
from motionkit.video_io import probe_video, read_video, sidecar_path, write_video

F, H, W = 8, 48, 64


def smooth_clip(frames: int = F, height: int = H, width: int = W) -> np.ndarray:
    # Smooth gradients that move: H.264 keeps them close, and every frame differs from the last.
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack(
        [np.stack([(xx * 2 + 6 * t) % 200, yy * 3 % 200, (xx + yy + 4 * t) % 200], -1) for t in range(frames)]
    ).astype(np.uint8)


def palette_clip(frames: int = F) -> np.ndarray:
    # Few flat colours: survives the GIF palette exactly.
    clip = np.zeros((frames, H, W, 3), np.uint8)
    for t in range(frames):
        clip[t, 8:20] = (0, 0, 255)
        clip[t, :, 4 * t : 4 * t + 10] = (255, 0, 0)
    return clip


@pytest.mark.parametrize(
    ("name", "clip_fn", "tolerance"),
    [
        ("clip.mp4", smooth_clip, 4.0),  # mean abs error: lossy yuv420p
        ("clip.gif", palette_clip, 0.0),
        ("clip.webp", smooth_clip, 0.0),  # lossless by default
        ("clip.png", smooth_clip, 0.0),
        ("frames/", smooth_clip, 0.0),
        ("frames", smooth_clip, 0.0),
    ],
)
def test_round_trip(tmp_path, name, clip_fn, tolerance):
    clip = clip_fn()
    out = write_video(clip, tmp_path / name if not name.endswith("/") else f"{tmp_path}/{name}", fps=8)
    assert out.exists()
    back = read_video(out)
    assert back.shape == clip.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - clip).mean() <= tolerance
    info = probe_video(out)
    assert (info.frames, info.width, info.height) == (F, W, H)


def test_png_suffix_names_a_folder(tmp_path):
    out = write_video(smooth_clip(), tmp_path / "clip.png")
    assert out == tmp_path / "clip" and out.is_dir()
    assert sorted(p.name for p in out.iterdir())[:2] == ["00000.png", "00001.png"]


def test_mp4_probe_and_odd_size(tmp_path):
    clip = smooth_clip(height=33, width=47)
    out = write_video(clip, tmp_path / "odd.mp4", fps=12, crf=10)
    info = probe_video(out)
    assert (info.frames, info.width, info.height, info.codec) == (F, 48, 34, "h264")
    assert info.fps == pytest.approx(12) and info.duration_s == pytest.approx(F / 12, abs=0.01)
    back = read_video(out)
    assert np.abs(back[:, :33, :47].astype(int) - clip).mean() < 4


def test_input_layouts_agree(tmp_path):
    clip = smooth_clip()
    as_float_chw = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
    as_float_hwc = clip.astype(np.float32) / 255
    as_pil = [Image.fromarray(frame) for frame in clip]
    for i, frames in enumerate([as_float_chw, as_float_hwc, as_pil, iter(clip)]):
        np.testing.assert_array_equal(read_video(write_video(frames, tmp_path / f"v{i}/")), clip)


def test_gif_keeps_repeated_frames(tmp_path):
    # GIF/WebP writers merge identical consecutive frames; read-back restores the constant-rate count.
    clip = palette_clip()[[0, 0, 0, 1, 1, 2, 3, 3]]
    for name in ("hold.gif", "hold.webp"):
        np.testing.assert_array_equal(read_video(write_video(clip, tmp_path / name, fps=10)), clip)


def test_stride_and_max_frames(tmp_path):
    clip = smooth_clip(frames=10)
    out = write_video(clip, tmp_path / "clip.mp4")
    assert read_video(out, stride=3).shape[0] == 4  # frames 0, 3, 6, 9
    assert read_video(out, max_frames=3, stride=2).shape[0] == 3
    with pytest.raises(MotionkitError):
        read_video(out, stride=0)


def test_sidecar_json(tmp_path):
    out = write_video(smooth_clip(), tmp_path / "clip.mp4", fps=12, metadata={"seed": 7, "prompt": "a cat", "fps": 99})
    meta = json.loads(sidecar_path(out).read_text())
    assert sidecar_path(out).name == "clip.mp4.json"
    assert meta == {"seed": 7, "prompt": "a cat", "fps": 12, "frames": F, "width": W, "height": H}
    folder = write_video(smooth_clip(), tmp_path / "frames/", metadata={})
    assert (tmp_path / "frames.json").is_file() and probe_video(folder).fps == 8
    write_video(smooth_clip(), folder)  # rewritten without metadata: the old sidecar would be stale
    assert not (tmp_path / "frames.json").exists()


def _failing(clip, after):
    for i, frame in enumerate(clip):
        if i == after:
            raise RuntimeError("renderer crashed")
        yield frame


@pytest.mark.parametrize("name", ["clip.mp4", "clip.gif", "clip.webp", "frames"])
def test_failed_write_leaves_nothing(tmp_path, name):
    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_video(_failing(smooth_clip(), 4), tmp_path / name, metadata={"a": 1})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["clip.mp4", "frames"])
def test_failed_write_keeps_existing_output(tmp_path, name):
    good = write_video(smooth_clip(), tmp_path / name)
    before = read_video(good)
    with pytest.raises(RuntimeError):
        write_video(_failing(smooth_clip()[::-1], 5), tmp_path / name)
    np.testing.assert_array_equal(read_video(good), before)
    assert sorted(os.listdir(tmp_path)) == [good.name]


def test_overwrite_folder(tmp_path):
    write_video(smooth_clip(frames=10), tmp_path / "frames")
    out = write_video(smooth_clip(frames=3), tmp_path / "frames")
    assert read_video(out).shape[0] == 3 and os.listdir(tmp_path) == ["frames"]


def test_atomic_helpers(tmp_path):
    target = tmp_path / "state.bin"
    with atomic_write(target, "wb") as handle:
        handle.write(b"one")
    with pytest.raises(KeyError), atomic_write(target, "wb") as handle:
        handle.write(b"partial")
        raise KeyError("stop")
    assert target.read_bytes() == b"one"
    with atomic_path(tmp_path / "ckpt", is_dir=True) as tmp:
        (tmp / "weights").write_text("w")
    assert (tmp_path / "ckpt" / "weights").read_text() == "w"
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "state.bin"]


def test_corrupt_and_truncated_files(tmp_path):
    rng = np.random.default_rng(0)
    out = write_video(rng.integers(0, 256, (F, H, W, 3), dtype=np.uint8), tmp_path / "noise.mp4")
    data = out.read_bytes()
    cases = {
        "half.mp4": data[: len(data) // 2],
        "no_tail.mp4": data[:-400],  # cuts into the moov index at the end
        "text.mp4": b"this is not a video\n" * 20,
        "empty.mp4": b"",
        "text.gif": b"GIF89a but not really",
        "notes.txt": b"hello",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(FormatError, match=name):
            read_video(tmp_path / name)
        with pytest.raises(FormatError) as info:
            read_video(tmp_path / name)
            probe_video(tmp_path / name)
        assert "\n" not in str(info.value)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FormatError, match="no .png/.jpg frames"):
        read_video(tmp_path / "empty_dir")
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_video(tmp_path / "missing.mp4")


def test_bad_write_requests(tmp_path):
    with pytest.raises(MotionkitError, match=r"\.mp4, \.gif, \.webp"):
        write_video(smooth_clip(), tmp_path / "clip.avi")
    with pytest.raises(MotionkitError, match="no frames"):
        write_video([], tmp_path / "clip.mp4")
    with pytest.raises(MotionkitError, match="frame 1 is"):
        write_video([smooth_clip()[0], smooth_clip(height=32)[0]], tmp_path / "clip.gif")
    with pytest.raises(MotionkitError, match="fps"):
        write_video(smooth_clip(), tmp_path / "clip.mp4", fps=0)
    assert os.listdir(tmp_path) == []


def _webm(frames: np.ndarray, path) -> None:
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("libvpx-vp9", rate=8)
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    for frame in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def test_files_cut_between_frames_are_reported_truncated(tmp_path, capsys):
    from motionkit.cli import main

    rng = np.random.default_rng(1)
    frames = (np.arange(12)[:, None, None, None] * 20 + rng.integers(0, 30, (12, 32, 32, 3))).astype(np.uint8)
    gif = write_video(frames, tmp_path / "full.gif").read_bytes()
    starts = [i for i in range(len(gif)) if gif[i : i + 3] == b"\x21\xf9\x04"]  # each frame's control block
    (tmp_path / "cut.gif").write_bytes(gif[: starts[8]])  # 8 whole frames, no trailer: PIL reads them quietly
    _webm(frames, tmp_path / "full.webm")
    webm = (tmp_path / "full.webm").read_bytes()
    (tmp_path / "cut.webm").write_bytes(webm[: int(len(webm) * 0.8)])  # no frame count in a WebM header
    for name in ("full.gif", "full.webm"):
        assert read_video(tmp_path / name).shape == (12, 32, 32, 3)
    for name in ("cut.gif", "cut.webm"):
        with pytest.raises(FormatError, match=f"{name}: truncated"):
            read_video(tmp_path / name)
        assert main(["eval", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "truncated" in err

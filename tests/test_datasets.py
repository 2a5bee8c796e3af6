"""Training datasets on small synthetic videos: shapes, sampling, seeds, dropout, corrupt files, cache."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from motionkit.data.curate import Clip
from motionkit.data.datasets import LatentCacheDataset, VideoClipDataset
from motionkit.data.decode import decode_clip
from motionkit.data.synthetic import moving_pattern
from motionkit.video_io import write_video


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.mp4 (40 frames, caption sidecar), b.mp4 (36 frames, 96x48), broken.mp4 (garbage)."""
    root = tmp_path_factory.mktemp("clips")
    write_video(moving_pattern(40, hue=0, seed=1), root / "a.mp4", fps=12)
    write_video(moving_pattern(36, 48, 96, hue=2, seed=2), root / "b.mp4", fps=12)
    (root / "a.txt").write_text("texture moving right", encoding="utf-8")
    (root / "broken.mp4").write_bytes(b"\x00garbage" * 200)
    return root


def test_folder_dataset_shapes_range_and_stride(folder: Path) -> None:
    ds = VideoClipDataset.from_folder(folder, n_frames=4, stride=3, size=(32, 32), flip_prob=0.0, seed=0)
    names = [Path(s.path).name for s in ds.sources]
    item = ds[names.index("a.mp4")]
    assert item["pixel_values"].shape == (4, 3, 32, 32)
    assert item["pixel_values"].dtype == torch.float32
    assert -1.0 <= item["pixel_values"].min() < item["pixel_values"].max() <= 1.0
    assert item["prompt"] == "texture moving right"
    plan = ds.plan(names.index("a.mp4"))
    assert len(plan.indices) == 4 and np.all(np.diff(plan.indices) == 3) and plan.indices[-1] < 40
    # The pixels are exactly the planned frames, resized and cropped.
    expected = decode_clip(plan.path, plan.indices, size=(32, 32), output="tensor")
    assert torch.equal(item["pixel_values"], expected)
    assert ds[names.index("b.mp4")]["prompt"] == ""


def test_seed_makes_samples_reproducible(folder: Path) -> None:
    kwargs = dict(n_frames=3, stride=2, size=(24, 24), flip_prob=0.5, seed=7)
    first = [VideoClipDataset.from_folder(folder, **kwargs).plan(i) for i in (0, 1)]
    again = VideoClipDataset.from_folder(folder, **kwargs)
    assert [again.plan(i) for i in (0, 1)] == first
    plans = set()
    for epoch in range(6):
        again.set_epoch(epoch)
        plans.add(again.plan(0))
    assert len(plans) > 1  # a new epoch draws new starts/flips


def test_fps_sampling_and_buckets(folder: Path) -> None:
    ds = VideoClipDataset.from_folder(folder, n_frames=3, stride=None, fps=4.0, buckets=[(32, 32), (32, 64)], random_start=False)
    names = [Path(s.path).name for s in ds.sources]
    plan_b = ds.plan(names.index("b.mp4"))
    assert np.all(np.diff(plan_b.indices) == 3)  # 12 fps -> 4 fps
    assert plan_b.size == (32, 64)  # 2:1 video -> 2:1 bucket
    assert ds[names.index("b.mp4")]["pixel_values"].shape == (3, 3, 32, 64)
    assert ds.plan(names.index("a.mp4")).size == (32, 32)


def test_caption_dropout_rate(folder: Path) -> None:
    ds = VideoClipDataset.from_folder(folder, n_frames=2, caption_dropout=0.3, seed=1)
    index = [Path(s.path).name for s in ds.sources].index("a.mp4")
    dropped = 0
    for epoch in range(400):
        ds.set_epoch(epoch)
        dropped += ds.plan(index).prompt == ""
    assert 0.22 < dropped / 400 < 0.38


def test_corrupt_video_is_skipped_and_counted(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = VideoClipDataset.from_folder(folder, n_frames=2, size=(16, 16), seed=0)
    broken = [Path(s.path).name for s in ds.sources].index("broken.mp4")
    with caplog.at_level(logging.WARNING, logger="motionkit.data.datasets"):
        item = ds[broken]
    assert Path(item["path"]).name != "broken.mp4"
    assert item["pixel_values"].shape == (2, 3, 16, 16)
    assert ds.skipped == 1 and "broken.mp4" in caplog.text
    ds[broken]  # known-bad: not retried, not counted twice
    assert ds.skipped == 1
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=0)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (3, 2, 3, 16, 16) and len(batch["prompt"]) == 3


def test_manifest_and_csv_sources(folder: Path, tmp_path: Path) -> None:
    clip = Clip(str(folder / "a.mp4"), 10, 30, 10 / 12, 2.5, 12.0, 64, 48, 2.0, "from manifest", "0" * 16)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(clip.to_json() + "\n", encoding="utf-8")
    ds = VideoClipDataset.from_manifest(manifest, n_frames=5, stride=4, size=(16, 16), seed=3)
    for epoch in range(5):
        ds.set_epoch(epoch)
        plan = ds.plan(0)
        assert 10 <= plan.indices[0] and plan.indices[-1] < 30  # stays inside the curated clip
    assert ds[0]["prompt"] == "from manifest"

    table = tmp_path / "webvid.csv"
    table.write_text("videoid,name\nb,wide texture\nmissing,no file\n", encoding="utf-8")
    ds = VideoClipDataset.from_csv(table, folder, n_frames=2, size=(16, 16))
    assert len(ds) == 1 and ds[0]["prompt"] == "wide texture"


def test_latent_cache_round_trip(folder: Path, tmp_path: Path) -> None:
    calls = []

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        calls.append(pixels.shape)
        return torch.nn.functional.avg_pool2d(pixels, 8)  # stands in for the VAE: [F, 3, H/8, W/8]

    base = VideoClipDataset.from_folder(folder, n_frames=3, stride=2, size=(16, 16), random_start=False, flip_prob=0.0)
    index = [Path(s.path).name for s in base.sources].index("a.mp4")
    cached = LatentCacheDataset(base, tmp_path / "cache", encode)
    first = cached[index]
    assert first["latents"].shape == (3, 3, 2, 2) and first["prompt"] == "texture moving right"
    files = list((tmp_path / "cache").rglob("*.safetensors"))
    assert len(files) == 1 and not list((tmp_path / "cache").rglob(".*"))  # no temporary left behind
    # A fresh dataset without an encoder reads the same latents back from disk.
    again = LatentCacheDataset(base, tmp_path / "cache", encode=None)[index]
    assert torch.equal(again["latents"], first["latents"]) and len(calls) == 1
    expected = encode(base[index]["pixel_values"])
    assert torch.allclose(first["latents"], expected)

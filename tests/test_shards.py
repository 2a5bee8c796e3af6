"""WebDataset shards: manifest -> shards round trip (read back by webdataset itself), latent shards,
the streaming dataset split by rank and worker, and exact resume, alone and inside motionkit train."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from motionkit.data.curate import CurateOptions, curate, read_manifest, read_rows
from motionkit.data.decode import decode_clip
from motionkit.data.shards import ShardIndex, iter_shard_rows, read_member, write_shards
from motionkit.data.stream import ShardStream
from motionkit.data.synthetic import moving_pattern
from motionkit.errors import MotionkitError
from motionkit.train.trainer import collate_clips
from motionkit.utils.worker_processes import loader_context
from motionkit.video_io import write_video

FRAMES, SIZE = 4, 32


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven 32x32 videos (one with a hard cut, so one clip is cut out of its file), curated to parquet."""
    root = tmp_path_factory.mktemp("videos")
    for i in range(6):
        write_video(moving_pattern(16, SIZE, SIZE, speed=1.0 + i % 3, hue=i % 3, seed=i), root / f"v{i}.mp4", fps=8)
    cut = np.concatenate([moving_pattern(16, SIZE, SIZE, hue=0, seed=10), moving_pattern(16, SIZE, SIZE, hue=2, seed=11)])
    write_video(cut, root / "cut.mp4", fps=8)
    for i in range(6):
        (root / f"v{i}.txt").write_text(f"pattern {i}", encoding="utf-8")
    out = root / "m.parquet"
    options = CurateOptions(min_duration=0.5, min_motion=None, dedup_threshold=None, min_scene_len=4)
    curate([root], out, progress=False, options=options)
    assert len(read_manifest(out)) == 8
    return out


@pytest.fixture(scope="module")
def shards(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "s"
    write_shards(manifest, out, clips_per_shard=3, progress=False)
    return out


def test_manifest_to_shards_round_trip_and_webdataset_reads_them(manifest: Path, shards: Path) -> None:
    import webdataset as wds

    index = ShardIndex.open(shards)
    assert index.kind == "video" and index.sample_counts == [3, 3, 2]
    rows = [r for r in read_rows(manifest) if r.keep]
    stored = list(iter_shard_rows(shards))
    assert [s["source_path"] for s in stored] == [r.clip.path for r in rows]
    assert [{k: v for k, v in s.items() if k != "source_path"} for s in stored] == [r.to_dict() for r in rows]
    # webdataset's own reader sees the same samples: keys, captions, rows and video bytes.
    samples = list(wds.WebDataset([str(p) for p in sorted(shards.glob("*.tar"))], shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(8)]
    assert [s["txt"].decode() for s in samples] == [r.clip.caption for r in rows]
    assert [json.loads(s["json"])["hash"] for s in samples] == [r.clip.hash for r in rows]
    for number, (sample, row) in enumerate(zip(samples, rows)):
        entry = index.samples(number // 3)[number % 3]
        assert read_member(index, number // 3, entry, "mp4").getvalue() == sample["mp4"]
        clip = row.clip
        decoded = decode_clip(read_member(index, number // 3, entry, "mp4"), list(range(clip.num_frames)))
        source = decode_clip(clip.path, list(range(clip.start_frame, clip.end_frame)))
        if clip.end_frame - clip.start_frame == 16 and "cut" not in clip.path:
            assert sample["mp4"] == Path(clip.path).read_bytes()  # a whole file is stored as it is
        else:
            psnr = 10 * np.log10(255**2 / np.mean((decoded.astype(float) - source) ** 2))
            assert decoded.shape == source.shape and psnr > 35  # a cut clip is re-encoded at crf 18
    with pytest.raises(MotionkitError, match="already holds shards"):
        write_shards(manifest, shards, progress=False)


def _stream(shards: Path, **changes) -> ShardStream:
    options = dict(batch_size=2, seed=3, n_frames=FRAMES, stride=2, size=(SIZE, SIZE), flip_prob=0.5, caption_dropout=0.3)
    options.update(changes)
    return ShardStream(shards, **options)


def _batches(stream: ShardStream, epoch: int, start: int, workers: int) -> list[dict]:
    stream.set_position(epoch, start)
    loader = DataLoader(stream, batch_size=stream.batch_size, num_workers=workers, collate_fn=collate_clips,
                        multiprocessing_context=loader_context(workers))
    return list(loader)


def _same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x["prompt"] == y["prompt"] and torch.equal(x["pixel_values"], y["pixel_values"]) for x, y in zip(a, b)
    )


def test_stream_resumes_exactly_whatever_the_worker_count(shards: Path) -> None:
    stream = _stream(shards)
    full = _batches(stream, 1, 0, 0)
    assert len(full) == stream.batches_in_epoch(1) == 4
    assert _same(_batches(_stream(shards), 1, 0, 2), full)  # two workers: the same batches, in order
    resumed = _stream(shards)
    resumed.load_state_dict(stream.state_dict(1, 2))
    assert _same(_batches(resumed, 1, 2, 2), full[2:])
    assert not _same(_batches(_stream(shards), 2, 0, 0), full)  # a new epoch, a new order
    with pytest.raises(MotionkitError, match="another layout"):
        _stream(shards, batch_size=1).load_state_dict(stream.state_dict(1, 2))
    other = dict(stream.state_dict(1, 2), index_sha256="0" * 64)
    with pytest.raises(MotionkitError, match="shards changed"):
        _stream(shards).load_state_dict(other)


def test_ranks_read_disjoint_shards_and_stop_together(shards: Path) -> None:
    ranks = [_stream(shards, rank=r, world_size=2, batch_size=1) for r in range(2)]
    for epoch in range(3):
        batches = [r.epoch_batches(epoch) for r in ranks]
        assert len(batches[0]) == len(batches[1]) == ranks[0].batches_in_epoch(epoch)
        shard_sets = [{ref.shard for batch in b for ref in batch} for b in batches]
        assert not shard_sets[0] & shard_sets[1]
    with pytest.raises(MotionkitError, match="every process needs one"):
        _stream(shards, rank=0, world_size=4)


def test_latent_shards_feed_latents_without_decoding(manifest: Path, tmp_path: Path) -> None:
    def encode(pixels: torch.Tensor) -> torch.Tensor:  # a stand-in VAE: 8x average pooling, 4 channels
        pooled = torch.nn.functional.avg_pool2d(pixels, 8)
        return torch.cat([pooled, pooled[:, :1]], dim=1).transpose(0, 1)

    spec = {"n_frames": FRAMES, "stride": 2, "size": SIZE}
    write_shards(manifest, tmp_path / "lat", clips_per_shard=4, encode=encode, latents=spec, progress=False)
    stream = _stream(tmp_path / "lat", caption_dropout=0.0)
    items = list(iter(stream))
    assert len(items) == 8 and items[0]["latents"].shape == (4, FRAMES, SIZE // 8, SIZE // 8)
    first = stream.epoch_batches(0)[0][0]
    clip = [r.clip for r in read_rows(manifest) if r.keep][first.shard * 4 + first.sample]
    from motionkit.data.decode import indices_by_stride

    indices = indices_by_stride(clip.num_frames, FRAMES, 2, start=clip.start_frame, random_start=False)
    expected = encode(decode_clip(clip.path, indices, size=(SIZE, SIZE), output="tensor"))
    assert torch.equal(items[0]["latents"], expected) and items[0]["prompt"] == clip.caption
    with pytest.raises(MotionkitError, match="latents were encoded for"):
        _stream(tmp_path / "lat", n_frames=8)


def test_training_on_shards_resumes_bitwise(shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_train import _interrupt_after, reset_accelerate, tiny_base

    from motionkit.train.config import DataConfig, TrainConfig
    from motionkit.train.trainer import Trainer

    def trainer(out: Path, **changes) -> Trainer:
        reset_accelerate()
        data = DataConfig(shards=str(shards), n_frames=FRAMES, stride=2, size=SIZE, num_workers=changes.pop("workers", 0))
        config = TrainConfig(adapter="animatediff-v2", batch_size=2, max_steps=6, lr=1e-3, output_dir=str(out),
                             checkpoint_every=3, log_with=(), data=data, **changes)
        return Trainer(config, base=tiny_base())

    straight = trainer(tmp_path / "straight")
    straight.train()
    assert straight.position.epoch == 1  # 4 batches per epoch: the run crossed an epoch boundary
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_checkpoint", _interrupt_after(3))
        with pytest.raises(KeyboardInterrupt):
            trainer(tmp_path / "resumed").train()
    resumed = trainer(tmp_path / "resumed", resume_from="latest", workers=2)
    resumed.train()
    assert resumed.loader.multiprocessing_context.get_start_method() != "fork"  # forked workers can deadlock
    a, b = straight.trainable_state(), resumed.trainable_state()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]
    state = torch.load(resumed.last_checkpoint / "training_state.pt", weights_only=True)["data_stream"]
    assert (state["epoch"], state["batch"]) == (1, 2) and state["index_sha256"] == ShardIndex.open(shards).fingerprint

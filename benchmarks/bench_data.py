"""Data path throughput: curation on the local and Ray engines, and the training loader from video files
against tar shards.

Clips are rendered by ``motionkit.data.world`` (landscapes and pattern scenes, moving things, camera moves), two
shots per video with a hard cut between them, written as H.264 mp4. Curation is timed on the same
videos for each engine and reported in videos per second per core; the manifests of both engines must
be equal (the script checks it). The loader is timed over one epoch of the curated clips, from the
video files (``VideoClipDataset.from_manifest``), from video shards and from latent shards
(``ShardStream``), in clips per second.

    python benchmarks/bench_data.py                  # 24 videos, 2 cores
    python benchmarks/bench_data.py --videos 48 --cores 4 --json benchmarks/results/data.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_rows  # noqa: E402


def render_videos(folder: Path, count: int, frames: int, size: int, fps: float) -> None:
    from motionkit.data.world import caption, random_spec, render_clip
    from motionkit.video_io import write_video

    rng = np.random.default_rng(0)
    for i in range(count):
        shots = [random_spec(rng, frames=frames, size=size) for _ in range(2)]
        write_video(np.concatenate([render_clip(s) for s in shots]), folder / f"world{i:04d}.mp4", fps=fps)
        (folder / f"world{i:04d}.txt").write_text(caption(shots[0]), encoding="utf-8")


def time_curate(videos: Path, out: Path, **kwargs) -> float:
    from motionkit.data.curate import CurateOptions, curate

    start = time.perf_counter()
    curate([videos], out, options=CurateOptions(min_motion=None), progress=False, **kwargs)
    return time.perf_counter() - start


def start_worker_server(workers: int) -> float:
    """Start motionkit's worker fork server (once per process) and its first workers; seconds."""
    from concurrent.futures import ProcessPoolExecutor

    from motionkit.utils.worker_processes import worker_context

    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=worker_context()) as pool:
        list(pool.map(abs, range(workers)))
    return time.perf_counter() - start


def time_loader(dataset, batch_size: int, workers: int) -> tuple[float, int]:
    from motionkit.utils.worker_processes import loader_context

    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate, drop_last=True,
                        multiprocessing_context=loader_context(workers))
    start = time.perf_counter()
    clips = sum(len(batch["prompt"]) for batch in loader)
    return time.perf_counter() - start, clips


def _collate(items: list[dict]) -> dict:
    from motionkit.train.trainer import collate_clips

    return collate_clips(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=36, help="frames per shot (two shots per video)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--cores", type=int, default=2, help="processes (local) and CPUs (Ray)")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from motionkit.data.curate import read_rows

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        videos = root / "videos"
        videos.mkdir()
        render_videos(videos, args.videos, args.frames, args.size, fps=12)

        runs = [("local", 1, {"workers": 1}), ("local", args.cores, {"workers": args.cores})]
        if not args.skip_ray:
            runs.append(("ray", args.cores, {"engine": "ray", "workers": args.cores}))
        manifests = []
        for engine, cores, kwargs in runs:
            out = root / f"{engine}-{cores}.parquet"
            if engine == "ray":  # started outside the timing: a cluster is up before a long curation
                import ray

                start = time.perf_counter()
                ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
                rows.append({"what": "ray.init on this machine (once)", "cores": cores, "items": 0,
                             "seconds": round(time.perf_counter() - start, 2), "per_s_per_core": ""})
            if engine == "local" and cores > 1:  # started outside the timing, as Ray is: once per process
                rows.append({"what": "worker fork server start (once)", "cores": cores, "items": 0,
                             "seconds": round(start_worker_server(cores), 2), "per_s_per_core": ""})
            seconds = time_curate(videos, out, **kwargs)
            if engine == "ray":
                ray.shutdown()
            manifests.append(out)
            rows.append({
                "what": f"curate, {engine} engine", "cores": cores, "items": args.videos, "seconds": round(seconds, 2),
                "per_s_per_core": round(args.videos / seconds / cores, 3),
            })
        reference = sorted((r.to_dict() for r in read_rows(manifests[0])), key=lambda d: (d["path"], d["start_frame"]))
        for other in manifests[1:]:
            got = sorted((r.to_dict() for r in read_rows(other)), key=lambda d: (d["path"], d["start_frame"]))
            assert got == reference, f"{other.name}: manifest differs from the local engine's"

        from motionkit.data.datasets import VideoClipDataset
        from motionkit.data.shards import write_shards
        from motionkit.data.stream import ShardStream

        manifest = manifests[0]
        clips = sum(r.keep for r in read_rows(manifest))
        sampling = dict(n_frames=16, stride=2, size=(args.size, args.size), flip_prob=0.5, seed=0)
        write_shards(manifest, root / "shards", clips_per_shard=8, progress=False)

        def pool(pixels: torch.Tensor) -> torch.Tensor:  # stand-in encoder: the loader only reads latents
            return torch.nn.functional.avg_pool2d(pixels, 8).transpose(0, 1)

        write_shards(manifest, root / "latents", clips_per_shard=8, encode=pool,
                     latents={"n_frames": 16, "stride": 2, "size": args.size}, progress=False)
        sources = {
            "loader, video files (map-style)": VideoClipDataset.from_manifest(manifest, **sampling),
            "loader, video shards (stream)": ShardStream(root / "shards", batch_size=2, **sampling),
            "loader, latent shards (stream)": ShardStream(root / "latents", batch_size=2, **sampling),
        }
        for what, dataset in sources.items():
            for workers in (0, args.cores):
                seconds, seen = time_loader(dataset, 2, workers)
                rows.append({
                    "what": f"{what}, {workers} workers", "cores": max(workers, 1), "items": seen,
                    "seconds": round(seconds, 2), "per_s_per_core": round(seen / seconds / max(workers, 1), 3),
                })
        print(f"{args.videos} videos of 2 x {args.frames} frames at {args.size} px -> {clips} clips")
    print_table(rows, [("what", "what"), ("cores", "cores"), ("items", "items"), ("seconds", "seconds"),
                       ("per_s_per_core", "per s per core")])
    write_rows(rows, args.json)


if __name__ == "__main__":
    main()

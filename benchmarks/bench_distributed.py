"""Step time and memory of one training run per ``distributed.strategy``: one process, DDP and FSDP2 in
2 processes (``accelerate launch --multi_gpu --num_processes 2``, gloo on CPU), same global batch, same
tiny base and clips. Rounds interleave the layouts, so load changes hit all alike; medians over rounds.

Per process:
- ``step_s``: median seconds between optimizer steps after the warm-up (data, forward, backward, reduce, AdamW);
- ``state_MB``: bytes of the UNet's and adapter's weights (frozen and trained), gradients and AdamW state this
  process holds after a step (its shards under FSDP2): exact, allocator-independent, what sharding divides
  (the VAE and text encoder, frozen and outside the UNet, are the same in every layout and not counted);
- ``peak_rss_MB``: the process's peak resident memory (``ru_maxrss``; python, torch and the loader included).

DeepSpeed ZeRO-2/3 (2 processes): on CPU motionkit's trainer refuses them (accelerate turns DeepSpeed off with
``cpu=True``), so they run on DeepSpeed's own CPU engine over gloo, outside accelerate: the trainer is set up
as DDP, then ``train.zero.cpu_engine`` wraps its motion UNet (same model, data, loss, AdamW settings,
clipping) and DeepSpeed's backward and step train it. On GPUs they run through the trainer (accelerate).
Their ``state_MB`` counts each parameter's local part and the tensors DeepSpeed's ZeRO optimizer keeps (fp32
master partitions, gradient partitions, AdamW's state), each storage once, after the first backward (DeepSpeed
frees the gradients in its step) and after the first step.

    python benchmarks/bench_distributed.py                              # CPU, medium-sd UNet, 2 processes
    python benchmarks/bench_distributed.py --unet tiny-sd --rounds 3 --json benchmarks/results/distributed.json
    python benchmarks/bench_distributed.py --device cuda                # 2 GPUs: NCCL
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_rows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAYOUTS = (("single", 1, "ddp"), ("ddp", 2, "ddp"), ("fsdp2", 2, "fsdp2"), ("zero2", 2, "zero2"), ("zero3", 2, "zero3"))
CPU_ENGINE_NOTE = (
    "DeepSpeed CPU engine, outside accelerate (motionkit's trainer refuses ZeRO on CPU; on GPUs it runs through accelerate)"
)


def write_clips(folder: Path, n: int, frames: int, size: int) -> None:
    from motionkit.data.synthetic import moving_pattern
    from motionkit.video_io import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_video(moving_pattern(frames * 2, size, size, speed=1.0 + i % 3, hue=i % 3, seed=i), folder / f"clip{i}.mp4", fps=8)
        (folder / f"clip{i}.txt").write_text(f"pattern {i % 3}", encoding="utf-8")


def held_bytes(trainer: Any) -> int:
    """Weights, gradients and optimizer state this process holds (local shards of sharded tensors)."""
    from motionkit.train.sharding import local_view

    if trainer.deepspeed:  # accelerate's DeepSpeed plugin (GPUs): the engine holds the state
        return sum(t.untyped_storage().nbytes() for t in zero_storages(trainer.model).values())
    tensors = list(trainer.motion_unet.parameters()) + [p.grad for p in trainer.motion_unet.parameters() if p.grad is not None]
    for entry in trainer.optimizer.state_dict()["state"].values():
        tensors.extend(v for v in entry.values() if isinstance(v, torch.Tensor))
    return sum(local_view(t).numel() * t.element_size() for t in tensors)


def worker(args: argparse.Namespace) -> None:
    """One run in this process (one of the launched ones): train, time the steps, report as JSON on stdout."""
    from motionkit.tiny import tiny_pipeline_components
    from motionkit.train import zero
    from motionkit.train.config import TrainConfig
    from motionkit.train.trainer import Trainer

    torch.set_num_threads(1)
    config = TrainConfig.from_dict({
        "adapter": "animatediff-v2", "data": {"folder": args.clips, "n_frames": args.frames, "stride": 1, "size": args.size},
        "batch_size": args.batch, "max_steps": args.warmup + args.steps, "lr": 1e-4, "log_with": [], "checkpoint_every": 0,
        "output_dir": args.out, "cpu": args.device == "cpu", "distributed": {"strategy": args.strategy},
    })  # fmt: skip
    on_cpu_engine = zero.is_zero(args.strategy) and args.device == "cpu"
    if on_cpu_engine:  # the trainer refuses ZeRO on CPU: set it up as DDP, then DeepSpeed's engine takes the model
        config = config.with_overrides(["distributed.strategy=ddp"])
    trainer = Trainer(config, base=tiny_pipeline_components(seed=0, unet=args.unet)).setup()
    if on_cpu_engine:
        zero_worker(trainer, args)
        return
    stamps: list[float] = []
    held: list[int] = []
    step = trainer.optimizer.step

    def timed_step(*a: Any, **kw: Any) -> Any:
        out = step(*a, **kw)
        stamps.append(time.perf_counter())
        if len(held) < 1:  # after the first step AdamW's state exists
            held.append(held_bytes(trainer))
        return out

    trainer.optimizer.step = timed_step
    rank = trainer.accelerator.process_index
    trainer.train()
    report(rank, stamps, held[0], args)


def report(rank: int, stamps: list[float], held: int, args: argparse.Namespace) -> None:
    """Print this process's row (median step gap after the warm-up, held state, peak memory) for the launcher."""
    gaps = [b - a for a, b in zip(stamps, stamps[1:])][max(args.warmup - 1, 0) :]
    row = {
        "rank": rank,
        "step_s": statistics.median(gaps),
        "state_MB": held / 2**20,
        "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.device == "cuda":
        row["cuda_peak_MB"] = torch.cuda.max_memory_allocated() / 2**20
    sys.stdout.write(f"BENCH_ROW {json.dumps(row)}\n")  # one write: the processes share the launcher's pipe
    sys.stdout.flush()


def zero_storages(engine: Any) -> dict[int, torch.Tensor]:
    """The storages (address -> a tensor on it) of what this process holds under DeepSpeed's engine now: every
    parameter's local part (its partition under ZeRO-3, or the whole parameter where DeepSpeed keeps small
    ones whole) and gradient, and the tensors DeepSpeed's ZeRO optimizer keeps (fp32 master partitions,
    gradient partitions, AdamW's state on them). The reduce buckets (``ipg``: reserved at DeepSpeed's bucket
    size, written only as far as gradients fill them) are left out."""
    from motionkit.train import zero

    storages: dict[int, torch.Tensor] = {}

    def add(value: Any) -> None:
        if isinstance(value, torch.Tensor) and value.numel():
            storages[value.untyped_storage().data_ptr()] = value  # flat buffers: their parameters are views
        elif isinstance(value, (list, tuple)):
            for item in value:
                add(item)
        elif isinstance(value, dict):
            for item in value.values():
                add(item)

    for param in engine.module.parameters():
        add(zero.local_part(param))
        add(param.grad)
    for name, value in vars(engine.optimizer).items():
        if "ipg" not in name and name != "optimizer":
            add(value)
    add(list(engine.optimizer.optimizer.state.values()))
    return storages


def zero_worker(trainer: Any, args: argparse.Namespace) -> None:
    """One ZeRO run on DeepSpeed's CPU engine (outside accelerate) in this launched process: the trainer's
    model, data and loss, DeepSpeed's backward and step; the DDP wrapper accelerate built is dropped."""
    from motionkit.train import zero

    engine = zero.cpu_engine(trainer.motion_unet, trainer.trainable, trainer.config, args.strategy)
    trainer.model, trainer.deepspeed = engine, True  # the trainer's ZeRO paths (partitions' non-finite check)
    trainer.accelerator._models.clear()  # accelerate's reference to the dropped DDP wrapper
    stamps: list[float] = []
    held = 0
    total = args.warmup + args.steps
    epoch = 0
    while len(stamps) < total:
        trainer.sampler.set_position(epoch, 0)
        for index, batch in enumerate(trainer.loader):
            if len(stamps) == total:
                break
            loss = trainer.compute_loss(batch, epoch, trainer.sampler.positions(index))
            trainer._checked(loss, len(stamps) + 1, epoch, index)  # the loss gathered, as the trainer's loop
            engine.backward(loss)
            first = not stamps
            # DeepSpeed frees its gradients in the step: held here, their memory is not reused until counted
            after_backward = zero_storages(engine) if first else {}
            engine.step()
            trainer._check_weights(len(stamps) + 1, epoch, index)
            stamps.append(time.perf_counter())
            if first:  # after the first step AdamW's state exists
                held = sum(t.untyped_storage().nbytes() for t in {**after_backward, **zero_storages(engine)}.values())
                after_backward = {}
        epoch += 1
    report(trainer.accelerator.process_index, stamps, held, args)


def launch(layout: tuple[str, int, str], args: argparse.Namespace, clips: Path, out: Path) -> list[dict]:
    name, processes, strategy = layout
    script = [str(Path(__file__).resolve()), "--worker", "--strategy", strategy, "--clips", str(clips), "--out", str(out)]
    script += ["--unet", args.unet, "--frames", str(args.frames), "--size", str(args.size), "--device", args.device]
    script += ["--batch", str(args.global_batch // processes), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if processes == 1:
        command = [sys.executable, *script]
    else:
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *script,
        ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    if args.device == "cpu" and strategy.startswith("zero"):
        env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed's CPU engine (gloo), outside accelerate
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    if run.returncode != 0:
        raise SystemExit(f"{name} failed:\n{run.stderr[-3000:]}")
    return [json.loads(row) for row in re.findall(r"BENCH_ROW (\{[^{}]*\})", run.stdout)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unet", default="medium-sd", help="a motionkit.tiny UNet name")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="clip size in pixels")
    parser.add_argument("--global-batch", type=int, default=2, help="clips per optimizer step, over all processes")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all layouts")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    # worker side (one launched process)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="ddp", help=argparse.SUPPRESS)
    parser.add_argument("--clips", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    results: dict[str, list[list[dict]]] = {name: [] for name, _, _ in LAYOUTS}
    with tempfile.TemporaryDirectory() as tmp:
        clips = Path(tmp) / "clips"
        write_clips(clips, n=max(4, args.global_batch * 2), frames=args.frames, size=args.size)
        for round_index in range(args.rounds):
            for layout in LAYOUTS:
                results[layout[0]].append(launch(layout, args, clips, Path(tmp) / f"{layout[0]}-{round_index}"))
    rows = []
    base_time = None
    for name, processes, strategy in LAYOUTS:
        per_round = results[name]
        step = statistics.median(max(r["step_s"] for r in ranks) for ranks in per_round)  # the slowest process sets the pace
        state = statistics.median(max(r["state_MB"] for r in ranks) for ranks in per_round)
        rss = statistics.median(max(r["peak_rss_MB"] for r in ranks) for ranks in per_round)
        base_time = base_time or step
        row = {
            "layout": name, "processes": processes, "strategy": strategy, "unet": args.unet, "device": args.device,
            "global_batch": args.global_batch, "step_s": round(step, 4), "time_vs_single": round(step / base_time, 3),
            "state_MB_per_process": round(state, 2), "peak_rss_MB_per_process": round(rss, 1),
        }  # fmt: skip
        if strategy.startswith("zero"):
            row["engine"] = CPU_ENGINE_NOTE if args.device == "cpu" else "accelerate's DeepSpeed plugin (motionkit's trainer)"
        if args.device == "cuda":
            row["cuda_peak_MB_per_process"] = round(statistics.median(max(r["cuda_peak_MB"] for r in ranks) for ranks in per_round), 1)
        rows.append(row)
    print_table(rows, [("layout", "layout"), ("processes", "procs"), ("step_s", "step s"), ("time_vs_single", "time x"),
                       ("state_MB_per_process", "state MB/proc"), ("peak_rss_MB_per_process", "peak RSS MB/proc")])  # fmt: skip
    if args.device == "cpu":
        print(f"zero2, zero3: {CPU_ENGINE_NOTE}")
    write_rows(rows, args.json)


if __name__ == "__main__":
    main()

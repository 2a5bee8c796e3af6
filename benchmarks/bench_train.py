"""One training step (forward, MSE, backward, AdamW) of a motion adapter in a frozen UNet: motionkit's
``inject`` route against diffusers' ``UNetMotionModel.from_unet2d`` + ``freeze_unet2d_params()``.

Same UNet weights, same adapter weights (motionkit's exported to a diffusers ``MotionAdapter``), same
batch; steps interleaved in one run; ratios below 1.0 mean motionkit is faster / smaller.
Memory: the bytes autograd keeps for backward (activations; exact and allocator-independent, what
gradient checkpointing trades for time) and, on CUDA, ``max_memory_allocated`` per step.

    python benchmarks/bench_train.py                                  # CPU: tiny-sd and medium-sd, 8 frames
    python benchmarks/bench_train.py --gradient-checkpointing         # both sides checkpointed
    python benchmarks/bench_train.py --device cuda --unets medium-sd --frames 16 --batch 4
    python benchmarks/bench_train.py --device cuda --unets sd15 --frames 16 --batch 1 --autocast bf16
"""

from __future__ import annotations

import argparse
import json
import contextlib
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F


@contextmanager
def saved_bytes(counter: list[int]) -> Iterator[None]:
    """Count the distinct storages autograd saves for backward inside the block."""
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            counter[0] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def build(unet_name: str, device: str, checkpointing: bool):
    from diffusers import MotionAdapter as DiffusersMotionAdapter
    from diffusers import UNetMotionModel

    from motionkit.adapter import MotionAdapter
    from motionkit.formats import save_adapter
    from motionkit.injection import inject
    from motionkit.tiny import randomize_, tiny_unet

    unet = tiny_unet(unet_name)
    # diffusers normalises across frames and has a mid-block module: match both for equal work.
    ours = randomize_(MotionAdapter.from_unet(unet, "animatediff-v2", temporal_norm="across_frames"), std=0.02)
    with tempfile.TemporaryDirectory() as tmp:
        save_adapter(ours, Path(tmp) / "adapter", format="diffusers")
        theirs_adapter = DiffusersMotionAdapter.from_pretrained(Path(tmp) / "adapter")
    theirs = UNetMotionModel.from_unet2d(tiny_unet(unet_name), theirs_adapter).to(device)
    theirs.freeze_unet2d_params()
    motion_unet = inject(unet.to(device), ours)
    if checkpointing:
        motion_unet.enable_gradient_checkpointing()
        theirs.enable_gradient_checkpointing()
    motion_unet.adapter.train()
    theirs.train()
    opt_ours = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-4)
    opt_theirs = torch.optim.AdamW([p for p in theirs.parameters() if p.requires_grad], lr=1e-4)
    n_ours = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    n_theirs = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    return motion_unet, theirs, opt_ours, opt_theirs, (n_ours, n_theirs)


AUTOCAST = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def step_fn(model, optimizer, inputs: dict, target: torch.Tensor, repeat_text: int, counter: list[int],
            autocast: torch.dtype | None = None) -> Callable[[], None]:
    """One step; with ``autocast`` the forward runs in that dtype over fp32 weights (mixed precision; the
    loss is not scaled: this times the step, it does not train)."""
    ehs = inputs["encoder_hidden_states"]
    if repeat_text > 1:  # UNetMotionModel takes per-frame text states; motionkit repeats them itself
        ehs = ehs.repeat_interleave(repeat_text, dim=0)
    device_type = inputs["sample"].device.type

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        counter[0] = 0
        mixed = torch.autocast(device_type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
        with saved_bytes(counter), mixed:
            out = model(inputs["sample"], inputs["timestep"], ehs).sample
            loss = F.mse_loss(out.float(), target)
        loss.backward()
        optimizer.step()

    return run


def timed(fn: Callable[[], None], device: str) -> tuple[float, int]:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    return time.perf_counter() - start, peak


def bench(unet_name: str, args: argparse.Namespace) -> dict:
    from motionkit.tiny import unet_inputs

    device = args.device
    ours, theirs, opt_ours, opt_theirs, params = build(unet_name, device, args.gradient_checkpointing)
    inputs = {k: v.to(device) for k, v in unet_inputs(ours.unet, batch=args.batch, frames=args.frames).items()}
    target = torch.randn_like(inputs["sample"])
    with torch.no_grad():  # same weights, same batch: the two routes must compute the same prediction
        ehs = inputs["encoder_hidden_states"]
        diff = (ours(**inputs).sample - theirs(inputs["sample"], inputs["timestep"], ehs.repeat_interleave(args.frames, 0)).sample)
        max_diff = float(diff.abs().max())
    c_ours, c_theirs = [0], [0]
    autocast = AUTOCAST[getattr(args, "autocast", "none")]
    run_ours = step_fn(ours, opt_ours, inputs, target, 1, c_ours, autocast)
    run_theirs = step_fn(theirs, opt_theirs, inputs, target, args.frames, c_theirs, autocast)
    for _ in range(args.warmup):
        run_ours()
        run_theirs()
    t_ours, t_theirs, m_ours, m_theirs = [], [], 0, 0
    for _ in range(args.steps):  # interleaved so load changes hit both sides alike
        t, m = timed(run_ours, device)
        t_ours.append(t)
        m_ours = max(m_ours, m)
        t, m = timed(run_theirs, device)
        t_theirs.append(t)
        m_theirs = max(m_theirs, m)
    a, b = statistics.median(t_ours), statistics.median(t_theirs)
    row = {
        "unet": unet_name,
        "frames": args.frames,
        "batch": args.batch,
        "latent": int(inputs["sample"].shape[-1]),
        "checkpointing": args.gradient_checkpointing,
        "autocast": getattr(args, "autocast", "none"),
        "trainable_params": {"motionkit": params[0], "diffusers": params[1]},
        "step_s": {"motionkit": round(a, 4), "diffusers": round(b, 4)},
        "time_ratio": round(a / b, 3),
        "saved_for_backward_MB": {"motionkit": round(c_ours[0] / 2**20, 2), "diffusers": round(c_theirs[0] / 2**20, 2)},
        "memory_ratio": round(c_ours[0] / max(c_theirs[0], 1), 3),
        "prediction_max_abs_diff": max_diff,
    }
    if device == "cuda":
        row["cuda_peak_MB"] = {"motionkit": round(m_ours / 2**20, 1), "diffusers": round(m_theirs / 2**20, 1)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unets", default="tiny-sd,medium-sd", help="comma-separated motionkit.tiny UNet names")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--gradient-checkpointing", action="store_true", help="checkpoint both sides")
    parser.add_argument("--autocast", choices=sorted(AUTOCAST), default="none", help="mixed-precision forward")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = [bench(name, args) for name in args.unets.split(",")]
    print(f"{'unet':<10} {'ckpt':<5} {'motionkit s':>11} {'diffusers s':>11} {'time x':>7} {'mk MB':>8} {'df MB':>8} {'mem x':>6} {'max |diff|':>10}")
    for r in rows:
        print(
            f"{r['unet']:<10} {str(r['checkpointing']):<5} {r['step_s']['motionkit']:>11.4f} {r['step_s']['diffusers']:>11.4f} "
            f"{r['time_ratio']:>7.3f} {r['saved_for_backward_MB']['motionkit']:>8.1f} "
            f"{r['saved_for_backward_MB']['diffusers']:>8.1f} {r['memory_ratio']:>6.3f} {r['prediction_max_abs_diff']:>10.2e}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

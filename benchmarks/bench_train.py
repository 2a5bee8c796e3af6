"""One training step (forward, MSE, backward, AdamW) of a motion adapter in a frozen UNet: motionkit's
``inject`` route against diffusers' ``UNetMotionModel.from_unet2d`` + ``freeze_unet2d_params()``.

Same UNet weights, same adapter weights (motionkit's exported to a diffusers ``MotionAdapter``), same
batch; steps interleaved in one run; ratios below 1.0 mean motionkit is faster / smaller.
Memory: the tensor bytes still alive when forward ends (what backward needs: activations, and whatever
checkpointing or recompute keeps instead) and the peak during the whole step, both counted per storage by a
dispatch mode (exact, allocator-independent, one extra untimed step each); on CUDA also ``max_memory_allocated``.

    python benchmarks/bench_train.py                                  # CPU: tiny-sd and medium-sd, 8 frames
    python benchmarks/bench_train.py --gradient-checkpointing         # both sides checkpointed
    python benchmarks/bench_train.py --recompute feed_forward         # motionkit's selective recompute
    python benchmarks/bench_train.py --compile                        # motion modules through torch.compile
    python benchmarks/bench_train.py --device cuda --unets medium-sd --frames 16 --batch 4
    python benchmarks/bench_train.py --device cuda --unets sd15 --frames 16 --batch 1 --autocast bf16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from common import CLOCK_HELP, CLOCKS
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class TensorMemory(TorchDispatchMode):
    """Bytes of tensor storage that operators made and that are still alive: exact, whatever the allocator
    caches, and it sees what checkpointing keeps outside autograd's saved tensors. ``mark()`` reads the live
    bytes now; ``peak`` is the most seen (checked every ``every`` operators)."""

    def __init__(self, every: int = 4):
        super().__init__()
        self.every, self.calls, self.peak = every, 0, 0
        self.storages: dict[int, tuple[StorageWeakRef, int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                known = self.storages.get(storage._cdata)
                if known is None or known[0].expired():  # a freed storage's address can be reused
                    self.storages[storage._cdata] = (StorageWeakRef(storage), storage.nbytes())
        self.calls += 1
        if self.calls % self.every == 0:
            self.mark()
        return out

    def mark(self) -> int:
        self.storages = {k: v for k, v in self.storages.items() if not v[0].expired()}
        live = sum(n for _, n in self.storages.values())
        self.peak = max(self.peak, live)
        return live


def build(unet_name: str, device: str, checkpointing: bool, recompute: str = "none", compile_modules: bool = False):
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
    ours.set_recompute(recompute)
    if compile_modules:
        refusal = ours.compile_motion_modules()
        if refusal:
            print(f"--compile: {refusal}")
    motion_unet.adapter.train()
    theirs.train()
    opt_ours = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-4)
    opt_theirs = torch.optim.AdamW([p for p in theirs.parameters() if p.requires_grad], lr=1e-4)
    n_ours = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    n_theirs = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    return motion_unet, theirs, opt_ours, opt_theirs, (n_ours, n_theirs)


AUTOCAST = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def step_fn(
    model, optimizer, inputs: dict, target: torch.Tensor, repeat_text: int, autocast: torch.dtype | None = None
) -> Callable[..., None]:
    """One step; ``after_forward`` (if given) runs between the loss and backward. With ``autocast`` the forward
    runs in that dtype over fp32 weights (mixed precision; the loss is not scaled: this times the step, it
    does not train)."""
    ehs = inputs["encoder_hidden_states"]
    if repeat_text > 1:  # UNetMotionModel takes per-frame text states; motionkit repeats them itself
        ehs = ehs.repeat_interleave(repeat_text, dim=0)
    device_type = inputs["sample"].device.type

    def run(after_forward: Callable[[], object] | None = None) -> None:
        optimizer.zero_grad(set_to_none=True)
        mixed = torch.autocast(device_type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
        with mixed:
            out = model(inputs["sample"], inputs["timestep"], ehs).sample
            loss = F.mse_loss(out.float(), target)
        if after_forward is not None:
            after_forward()
        loss.backward()
        optimizer.step()

    return run


def step_memory(run: Callable[..., None]) -> tuple[int, int]:
    """(bytes held for backward when forward ends, peak bytes during the step), over what the step found."""
    held = [0]
    with TensorMemory() as memory:
        run(lambda: held.__setitem__(0, memory.mark()))
    memory.mark()
    return held[0], memory.peak


def timed(fn: Callable[[], None], device: str, clock: Callable[[], float] = time.perf_counter) -> tuple[float, int]:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = clock()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    return clock() - start, peak


def bench(unet_name: str, args: argparse.Namespace) -> dict:
    from motionkit.tiny import unet_inputs

    device = args.device
    # The GPU suite passes a namespace of its own: options it does not set keep their defaults.
    recompute, clock = getattr(args, "recompute", "none"), getattr(args, "clock", "wall")
    autocast_name, size = getattr(args, "autocast", "none"), getattr(args, "size", None)
    compile_modules = getattr(args, "compile", False)
    ours, theirs, opt_ours, opt_theirs, params = build(
        unet_name, device, args.gradient_checkpointing, recompute, compile_modules
    )
    inputs = unet_inputs(ours.unet, batch=args.batch, frames=args.frames)
    if size:
        latent = size // 8
        inputs["sample"] = torch.randn(args.batch, inputs["sample"].shape[1], args.frames, latent, latent)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    target = torch.randn_like(inputs["sample"])
    with torch.no_grad():  # same weights, same batch: the two routes must compute the same prediction
        ehs = inputs["encoder_hidden_states"]
        diff = (ours(**inputs).sample - theirs(inputs["sample"], inputs["timestep"], ehs.repeat_interleave(args.frames, 0)).sample)
        max_diff = float(diff.abs().max())
    run_ours = step_fn(ours, opt_ours, inputs, target, 1, AUTOCAST[autocast_name])
    run_theirs = step_fn(theirs, opt_theirs, inputs, target, args.frames, AUTOCAST[autocast_name])
    warmup_ours = 0.0  # with --compile: the motion modules' compile happens here, outside the timed steps
    for _ in range(args.warmup):
        warmup_ours += timed(run_ours, device, time.perf_counter)[0]
        run_theirs()
    t_ours, t_theirs, m_ours, m_theirs = [], [], 0, 0
    for _ in range(args.steps):  # interleaved so load changes hit both sides alike
        t, m = timed(run_ours, device, CLOCKS[clock])
        t_ours.append(t)
        m_ours = max(m_ours, m)
        t, m = timed(run_theirs, device, CLOCKS[clock])
        t_theirs.append(t)
        m_theirs = max(m_theirs, m)
    a, b = statistics.median(t_ours), statistics.median(t_theirs)
    (held_ours, peak_ours), (held_theirs, peak_theirs) = step_memory(run_ours), step_memory(run_theirs)
    row = {
        "unet": unet_name,
        "frames": args.frames,
        "batch": args.batch,
        "latent": int(inputs["sample"].shape[-1]),
        "checkpointing": args.gradient_checkpointing,
        "recompute": recompute,
        "autocast": autocast_name,
        "compile": compile_modules,
        "warmup_s": {"motionkit": round(warmup_ours, 2)},
        "trainable_params": {"motionkit": params[0], "diffusers": params[1]},
        "step_s": {"motionkit": round(a, 4), "diffusers": round(b, 4)},
        "time_ratio": round(a / b, 3),
        "clock": clock,
        "held_for_backward_MB": {"motionkit": round(held_ours / 2**20, 1), "diffusers": round(held_theirs / 2**20, 1)},
        "memory_ratio": round(held_ours / max(held_theirs, 1), 3),
        "step_peak_MB": {"motionkit": round(peak_ours / 2**20, 1), "diffusers": round(peak_theirs / 2**20, 1)},
        "peak_ratio": round(peak_ours / max(peak_theirs, 1), 3),
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
    parser.add_argument("--size", type=int, help="pixels (latent = size / 8); default: the UNet's sample size")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--gradient-checkpointing", action="store_true", help="checkpoint both sides")
    parser.add_argument("--recompute", default="none", choices=["none", "cheap", "feed_forward"],
                        help="motionkit's selective recompute in the motion modules (diffusers: no checkpointing)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile motionkit's motion modules (compile time: the warm-up, reported apart)")
    parser.add_argument("--autocast", choices=sorted(AUTOCAST), default="none", help="mixed-precision forward")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS), help=CLOCK_HELP)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = [bench(name, args) for name in args.unets.split(",")]
    print(f"{'unet':<10} {'ckpt':<5} {'recompute':<12} {'motionkit s':>11} {'diffusers s':>11} {'time x':>7} "
          f"{'mk held MB':>10} {'df held MB':>10} {'held x':>6} {'mk peak MB':>10} {'df peak MB':>10} {'peak x':>6} {'max |diff|':>10}")
    for r in rows:
        held, peak = r["held_for_backward_MB"], r["step_peak_MB"]
        print(
            f"{r['unet']:<10} {str(r['checkpointing']):<5} {r['recompute']:<12} {r['step_s']['motionkit']:>11.4f} "
            f"{r['step_s']['diffusers']:>11.4f} {r['time_ratio']:>7.3f} {held['motionkit']:>10.1f} {held['diffusers']:>10.1f} "
            f"{r['memory_ratio']:>6.3f} {peak['motionkit']:>10.1f} {peak['diffusers']:>10.1f} {r['peak_ratio']:>6.3f} "
            f"{r['prediction_max_abs_diff']:>10.2e}"
        )
        if r["compile"]:
            print(f"{r['unet']}: motionkit's warm-up (compile included, wall) {r['warmup_s']['motionkit']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

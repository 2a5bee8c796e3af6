"""Where one sampling step and one training step spend their time, by operator class.

Every aten operator the step runs (forward and backward) is timed and its FLOPs counted, then charged to
a class: convolutions, spatial self-attention, spatial cross-attention, temporal attention (the motion
modules' attention, projections included), feed-forward and projections, norms, layout copies
(permute/contiguous/reshape copies, wherever they run), the VAE, the text encoder, other. The class is
the innermost module the operator ran in (forward), or the module whose autograd node it serves
(backward). GFLOP/s per class is compared with a plain ``torch.mm`` of a similar size measured in the
same run: the fraction of what this machine's matmul reaches. The motion modules' time is also split into
their products (matrix products, attention cores, convolutions) and the rest, with what the products would
take at that peak: the floor of any exact saving inside them.

    python benchmarks/profile_step.py                       # medium-sd, 16 frames at 128 px, both steps
    python benchmarks/profile_step.py --pipeline diffusers  # the same steps through diffusers
    python benchmarks/profile_step.py --json benchmarks/results/profile-cpu.json

Times are this thread's CPU time (run with OMP_NUM_THREADS=1), taken by a Python dispatch mode around
each operator, so the profiled step runs slower than a plain one (the overhead is reported); shares and
GFLOP/s are what to read.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

# This thread's CPU time: with one thread, what the work took, however many other jobs share the machine.
CLOCK = time.thread_time

CLASSES = (
    "convolutions",
    "spatial self-attention",
    "spatial cross-attention",
    "temporal attention",
    "feed-forward / projections",
    "norms",
    "layout copies",
    "VAE",
    "text encoder",
    "other",
)
# Operators that only move data into another layout; charged to "layout copies" wherever they run.
MOTION_MODULE = re.compile(r"(^|\.)motion_modules\.\d+$")
LAYOUT_OPS = {"clone", "copy_", "_reshape_copy", "contiguous", "_unsafe_view_copy", "permute_copy", "transpose_copy"}
# Operators that do the arithmetic (matrix products, attention cores, convolutions): inside the motion modules
# they are the floor no exact saving gets under; everything else there (norms, softmax, activations, adds,
# copies) is what fusing or skipping work could remove.
PRODUCT_OPS = {
    "mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward",
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention_for_cpu_backward",
}


def module_class(name: str, module: nn.Module) -> str | None:
    """The class a module's own operators are charged to; None: the enclosing module decides."""
    from motionkit.modules.attention import TemporalAttention

    leaf = name.rsplit(".", 1)[-1]
    if isinstance(module, TemporalAttention) or (".motion_modules." in f".{name}." and leaf in ("attn1", "attn2")):
        return "temporal attention"
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return "convolutions"
    if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
        return "norms"
    if leaf == "attn1":
        return "spatial self-attention"
    if leaf == "attn2":
        return "spatial cross-attention"
    in_attention = any(part in ("attn1", "attn2", "attention_blocks") for part in name.split("."))
    if (isinstance(module, nn.Linear) and not in_attention) or type(module).__name__ == "FeedForward":
        return "feed-forward / projections"
    return None


class _ClassStack:
    """Module hooks that keep the innermost labelled module's class, and, with grad on, which autograd
    nodes (by sequence number) each class created, so backward operators can be charged to it."""

    def __init__(self, roots: dict[str, nn.Module]):
        self.stack: list[tuple[str, int]] = []
        self.node_class: dict[int, str] = {}
        self.motion_depth = 0  # > 0 inside a motion module
        self.motion_nodes: set[int] = set()
        self._probe = torch.zeros((), requires_grad=True)
        self._handles = []
        for root_class, root in roots.items():
            for name, module in root.named_modules():
                label = root_class if root_class in ("VAE", "text encoder") else (module_class(name, module) if name else None)
                if label is not None:
                    self._handles.append(module.register_forward_pre_hook(self._enter(label)))
                    self._handles.append(module.register_forward_hook(self._leave(label), always_call=True))
                if MOTION_MODULE.search(name):
                    self._handles.append(module.register_forward_pre_hook(self._enter_motion))
                    self._handles.append(module.register_forward_hook(self._leave_motion, always_call=True))

    def _sequence(self) -> int:
        if not torch.is_grad_enabled():
            return -1
        return (self._probe * 1).grad_fn._sequence_nr()

    def _enter(self, label: str) -> Callable:
        def hook(_module: nn.Module, _args: Any) -> None:
            self.stack.append((label, self._sequence()))

        return hook

    def _leave(self, label: str) -> Callable:
        def hook(_module: nn.Module, _args: Any, _out: Any) -> None:
            _, start = self.stack.pop()
            end = self._sequence()
            for seq in range(start + 1, end):  # inner modules returned first, so the innermost keeps its nodes
                self.node_class.setdefault(seq, label)

        return hook

    def _enter_motion(self, _module: nn.Module, _args: Any) -> None:
        self.motion_depth += 1
        self._motion_start = self._sequence()

    def _leave_motion(self, _module: nn.Module, _args: Any, _out: Any) -> None:
        self.motion_depth -= 1
        self.motion_nodes.update(range(self._motion_start + 1, self._sequence()))

    def current(self) -> str:
        return self.stack[-1][0] if self.stack else "other"

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class _OperatorTimer(TorchDispatchMode):
    def __init__(self, classes: _ClassStack):
        super().__init__()
        self.classes = classes
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, float] = defaultdict(float)
        self.operators = 0
        self.motion_seconds = 0.0
        self.motion_product_seconds = 0.0
        self.motion_product_flops = 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        start = CLOCK()
        out = func(*args, **kwargs)
        elapsed = CLOCK() - start
        name = func._overloadpacket.__name__
        node = torch._C._current_autograd_node()
        if node is not None:  # backward: the class whose forward made this node
            label = self.classes.node_class.get(node._sequence_nr(), "other")
            in_motion = node._sequence_nr() in self.classes.motion_nodes
        else:
            label, in_motion = self.classes.current(), self.classes.motion_depth > 0
        if name in LAYOUT_OPS:
            label = "layout copies"
        self.seconds[label] += elapsed
        self.operators += 1
        counter = ATTENTION_FLOPS.get(name) or flop_registry.get(func._overloadpacket)
        flops = counter(*args, **kwargs, out_val=out) if counter is not None else 0
        self.flops[label] += flops
        if in_motion:
            self.motion_seconds += elapsed
            if name in PRODUCT_OPS:
                self.motion_product_seconds += elapsed
                self.motion_product_flops += flops
        return out

    def motion_summary(self, peak: float) -> dict[str, float]:
        """The motion modules' time, split into their products and the rest, and the products' time at
        the matmul peak: about the least an exact motion module can cost on this machine (libraries'
        convolution kernels can beat a plain product; the motion modules' products are almost all matmuls)."""
        return {
            "ms": round(self.motion_seconds * 1e3, 1),
            "share": round(self.motion_seconds / sum(self.seconds.values()), 3),
            "product_ms": round(self.motion_product_seconds * 1e3, 1),
            "product_GFLOP": round(self.motion_product_flops / 1e9, 2),
            "product_of_mm_peak": round(self.motion_product_flops / self.motion_product_seconds / 1e9 / peak, 3)
            if self.motion_product_seconds else 0.0,
            "other_ms": round((self.motion_seconds - self.motion_product_seconds) * 1e3, 1),
            "product_ms_at_mm_peak": round(self.motion_product_flops / peak / 1e6, 1),
        }


def _attention_flops(query: torch.Tensor, key: torch.Tensor, *args: Any, **kwargs: Any) -> int:
    """QK^T and PV: 4 * batch * heads * queries * keys * head dim."""
    *batch, queries, dim = query.shape
    return 4 * math.prod(batch) * queries * key.shape[-2] * dim


def _attention_backward_flops(_grad: torch.Tensor, query: torch.Tensor, key: torch.Tensor, *args: Any, **kwargs: Any) -> int:
    """dV, dP, dQ, dK, with P recomputed from the saved log-sum-exp: five products of the forward's size."""
    return 10 * _attention_flops(query, key) // 4


# CPU's fused attention is missing from torch's FLOP table.
ATTENTION_FLOPS: dict[str, Callable[..., int]] = {
    "_scaled_dot_product_flash_attention_for_cpu": lambda q, k, *a, out_val=None, **kw: _attention_flops(q, k),
    "_scaled_dot_product_flash_attention_for_cpu_backward": lambda g, q, k, *a, out_val=None, **kw: _attention_backward_flops(g, q, k),
}


@contextmanager
def attributed(roots: dict[str, nn.Module]) -> Iterator[_OperatorTimer]:
    classes = _ClassStack(roots)
    timer = _OperatorTimer(classes)
    try:
        with timer:
            yield timer
    finally:
        classes.remove()


def matmul_peak(shapes: list[tuple[int, int, int]], repeats: int = 5) -> tuple[float, tuple[int, int, int]]:
    """Best GFLOP/s of a plain ``torch.mm`` over ``shapes`` (m, k, n), and the shape that reached it."""
    best = (0.0, shapes[0])
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        seconds = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
        best = max(best, (2 * m * k * n / seconds / 1e9, (m, k, n)))
    return best


def _timed(fn: Callable[[], Any]) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def _rows(timer: _OperatorTimer, peak: float) -> list[dict[str, Any]]:
    total = sum(timer.seconds.values())
    rows = []
    for label in CLASSES:
        seconds, flops = timer.seconds.get(label, 0.0), timer.flops.get(label, 0.0)
        if seconds == 0.0 and flops == 0.0:
            continue
        rate = flops / seconds / 1e9 if seconds else 0.0
        rows.append({
            "class": label,
            "ms": round(seconds * 1e3, 1),
            "share": round(seconds / total, 3),
            "GFLOP": round(flops / 1e9, 2),
            "GFLOP/s": round(rate, 1),
            "of_mm_peak": round(rate / peak, 3) if flops else None,
        })
    return rows


# -- the two steps -------------------------------------------------------------------------------------


def sampling_step(pipeline: str, frames: int, size: int) -> tuple[Callable[[], Any], dict[str, nn.Module]]:
    """One guided denoising step through the whole pipeline (text encoding, UNet, scheduler, VAE decode)."""
    from bench_sampling import build

    ours, theirs = build("medium-sd", "cpu", torch.float32)
    pipe = ours if pipeline == "motionkit" else theirs
    call = dict(
        prompt="a corgi running on the beach", negative_prompt="blurry", num_frames=frames, height=size,
        width=size, num_inference_steps=1, guidance_scale=7.5, output_type="pt",
    )

    def run() -> Any:
        with torch.no_grad():
            return pipe(**call, generator=torch.Generator("cpu").manual_seed(0))

    unet = pipe.motion_unet if pipeline == "motionkit" else pipe.unet  # motionkit's modules live beside the UNet
    return run, {"UNet": unet, "VAE": pipe.vae, "text encoder": pipe.text_encoder}


def training_step(pipeline: str, frames: int, size: int, batch: int) -> tuple[Callable[[], Any], dict[str, nn.Module]]:
    """Forward, MSE, backward and AdamW on the adapter, as ``bench_train.py`` runs it."""
    from bench_train import build, step_fn

    from motionkit.tiny import unet_inputs

    ours, theirs, opt_ours, opt_theirs, _ = build("medium-sd", "cpu", checkpointing=False)
    inputs = unet_inputs(ours.unet, batch=batch, frames=frames)
    latent = size // 8
    inputs["sample"] = torch.randn(batch, 4, frames, latent, latent, generator=torch.Generator().manual_seed(0))
    target = torch.randn_like(inputs["sample"])
    if pipeline == "motionkit":
        return step_fn(ours, opt_ours, inputs, target, 1), {"UNet": ours}
    return step_fn(theirs, opt_theirs, inputs, target, frames), {"UNet": theirs}


def profile(step: Callable[[], Any], roots: dict[str, nn.Module], repeats: int) -> tuple[_OperatorTimer, float, float]:
    """(attributed operators, plain step seconds, profiled step seconds)."""
    step()  # warm-up
    plain = min(_timed(step) for _ in range(repeats))
    with attributed(roots) as timer:
        start = CLOCK()
        step()
        profiled = CLOCK() - start
    return timer, plain, profiled


def markdown(title: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"{title}", "", "| class | ms | time share | GFLOP | GFLOP/s | of mm peak |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        peak = f"{r['of_mm_peak']:.2f}" if r["of_mm_peak"] is not None else "-"
        lines.append(f"| {r['class']} | {r['ms']:.1f} | {r['share']:.1%} | {r['GFLOP']:.2f} | {r['GFLOP/s']:.1f} | {peak} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="motionkit", choices=["motionkit", "diffusers"])
    parser.add_argument("--steps", default="sampling,training", help="comma-separated: sampling, training")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=128, help="pixels (latent = size / 8)")
    parser.add_argument("--batch", type=int, default=1, help="videos per training step")
    parser.add_argument("--repeats", type=int, default=2, help="plain (unprofiled) runs; the fastest is reported")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.manual_seed(0)

    latent_tokens = 2 * args.frames * (args.size // 8) ** 2  # a guided batch's frames x latent positions
    peak, shape = matmul_peak([(latent_tokens, 1152, 128), (latent_tokens, 576, 64), (1024, 1024, 1024)])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); plain torch.mm peak {peak:.1f} GFLOP/s at {shape}")
    report: dict[str, Any] = {"pipeline": args.pipeline, "threads": torch.get_num_threads(), "mm_peak_GFLOPs": round(peak, 1),
                              "mm_peak_shape": list(shape), "frames": args.frames, "size": args.size, "steps": {}}
    for name in args.steps.split(","):
        if name == "sampling":
            step, roots = sampling_step(args.pipeline, args.frames, args.size)
            title = f"Sampling step ({args.pipeline}): guided, {args.frames} frames at {args.size} px, decode included"
        elif name == "training":
            step, roots = training_step(args.pipeline, args.frames, args.size, args.batch)
            title = f"Training step ({args.pipeline}): batch {args.batch}, {args.frames} frames at {args.size} px, no checkpointing"
        else:
            raise SystemExit(f"unknown step {name!r}: use sampling or training")
        timer, plain, profiled = profile(step, roots, args.repeats)
        rows = _rows(timer, peak)
        print()
        print(markdown(title, rows))
        motion = timer.motion_summary(peak)
        print(f"\nmotion modules (all classes): {motion['ms']:.0f} ms, {motion['share']:.1%} of the step; "
              f"products {motion['product_ms']:.0f} ms ({motion['product_GFLOP']:.2f} GFLOP, "
              f"{motion['product_of_mm_peak']:.2f} of mm peak; {motion['product_ms_at_mm_peak']:.0f} ms at the peak), "
              f"the rest {motion['other_ms']:.0f} ms")
        print(f"plain step {plain * 1e3:.0f} ms; profiled {profiled * 1e3:.0f} ms ({timer.operators} operators timed)")
        report["steps"][name] = {"rows": rows, "plain_ms": round(plain * 1e3, 1), "profiled_ms": round(profiled * 1e3, 1),
                                "motion_module_share": motion["share"], "motion_modules": motion}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

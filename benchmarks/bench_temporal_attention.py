"""Benchmark temporal attention backends at AnimateDiff shapes.

Times the fused Triton kernel, SDPA (with the head split/merge the diffusers processor does),
xformers (if installed) and eager math (head_to_batch_dim copies + baddbmm/softmax/bmm), forward
and forward+backward, and reports each against SDPA and against the memory-bandwidth limit.

Layouts:
  module  q/k/v are three [N, F, C] tensors, as the motion module's to_q/to_k/to_v give them; the
          result is [N, F, C] for to_out (the head split and merge are part of the timed call).
  packed  q/k/v are slices of a fused [N, F, 3C] projection output (sequences over frames).
  fib     q/k/v come from a frames-in-batch [B, F, S, 3C] projection; the baselines pay the
          rearrange to [B*S, F, C] and back, the Triton kernel reads the views in place and
          writes the frames-in-batch layout directly (preserve_layout=True).

Examples:
  python benchmarks/bench_temporal_attention.py --device cuda --dtype fp16 --out benchmarks/results/h100_fp16.json
  python benchmarks/bench_temporal_attention.py --quick --device cpu
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from motionkit.kernels import dispatch  # noqa: E402

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class Shape:
    name: str
    videos: int  # B: 2 with classifier-free guidance
    positions: int  # S = H * W latent positions
    frames: int
    channels: int
    heads: int

    @property
    def sequences(self) -> int:
        return self.videos * self.positions


FULL_SHAPES = [
    # Every motion-module level with classifier-free guidance (B = 2), 16 frames, AnimateDiff's 8 heads.
    # SD1.5 at 512 px: latent 64 x 64, levels at 64/32/16/8 positions a side -> d = 40 / 80 / 160 / 160.
    Shape("sd15-512-c320", 2, 64 * 64, 16, 320, 8),
    Shape("sd15-512-c640", 2, 32 * 32, 16, 640, 8),
    Shape("sd15-512-c1280", 2, 16 * 16, 16, 1280, 8),
    Shape("sd15-512-c1280-8x8", 2, 8 * 8, 16, 1280, 8),
    # SDXL at 1024 px: latent 128 x 128, three levels at 128/64/32 a side.
    Shape("sdxl-1024-c320", 2, 128 * 128, 16, 320, 8),
    Shape("sdxl-1024-c640", 2, 64 * 64, 16, 640, 8),
    Shape("sdxl-1024-c1280", 2, 32 * 32, 16, 1280, 8),
]
QUICK_SHAPES = [Shape("tiny-d40", 1, 8, 16, 80, 2)]


@dataclass
class Row:
    shape: str
    layout: str
    impl: str
    pass_: str
    ms: float
    ratio_vs_sdpa: float | None
    bandwidth_fraction: float | None
    max_err_vs_sdpa: float | None


# ------------------------------------------------------------------------ implementations ----


def eager_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """What diffusers' AttnProcessor (and the original AnimateDiff module) do."""
    n, f, c = q.shape
    d = c // heads

    def head_to_batch(x):
        return x.reshape(n, f, heads, d).permute(0, 2, 1, 3).reshape(n * heads, f, d)

    qb, kb, vb = head_to_batch(q), head_to_batch(k), head_to_batch(v)
    empty = torch.empty(n * heads, f, f, dtype=q.dtype, device=q.device)
    scores = torch.baddbmm(empty, qb, kb.transpose(-1, -2), beta=0, alpha=1 / math.sqrt(d))
    out = torch.bmm(scores.softmax(dim=-1), vb)
    return out.reshape(n, heads, f, d).permute(0, 2, 1, 3).reshape(n, f, c)


def _available_impls(device: str) -> dict[str, Callable]:
    impls: dict[str, Callable] = {"sdpa": dispatch.sdpa_attention}
    if importlib.util.find_spec("triton") is not None:
        from motionkit.kernels import triton_attention as ta

        if device == "cuda" or ta.INTERPRETED:
            impls["triton"] = ta.triton_temporal_attention
        else:
            print("# triton skipped: CPU without TRITON_INTERPRET=1")
    if device == "cuda" and importlib.util.find_spec("xformers") is not None:
        impls["xformers"] = dispatch.xformers_attention
    impls["math"] = eager_math
    return impls


def _make_call(impl: str, fn: Callable, layout: str, shape: Shape, fused: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A closure computing attention from the fused projection output, returning [N, F, C]-ordered
    results (packed) or frames-in-batch [B, F, S, C] results (fib)."""
    c, heads = shape.channels, shape.heads
    if layout == "module":
        q, k, v = fused.unbind(0)
        return lambda: fn(q, k, v, heads)
    if layout == "packed":
        q, k, v = fused.split(c, dim=-1)
        return lambda: fn(q, k, v, heads)
    b, f, s = shape.videos, shape.frames, shape.positions
    q, k, v = (t.transpose(1, 2) for t in fused.split(c, dim=-1))  # [B, S, F, C] views
    if impl == "triton":
        return lambda: fn(q, k, v, heads, preserve_layout=True).transpose(1, 2)

    def rearranged():
        flat = [t.reshape(b * s, f, c) for t in (q, k, v)]  # '(b f) s c -> (b s) f c' copies
        return fn(*flat, heads).reshape(b, s, f, c).transpose(1, 2).contiguous()

    return rearranged


# -------------------------------------------------------------------------------- timing ----


def _time_ms(fn: Callable[[], object], device: str, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _bytes_moved(shape: Shape, itemsize: int, backward: bool) -> int:
    # Minimum traffic: read q, k, v and write o (forward); the backward also reads q, k, v, dO and
    # writes dq, dk, dv (the F x F probabilities are recomputed, never stored).
    tensor = shape.sequences * shape.frames * shape.channels * itemsize
    return tensor * (4 + 7 if backward else 4)


LAYOUT_CHOICES = {"both": ["packed", "fib"], "all": ["module", "packed", "fib"]}


def _fused_input(layout: str, shape: Shape, device: str, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    if layout == "module":
        dims = (3, shape.sequences, shape.frames, shape.channels)
    elif layout == "packed":
        dims = (shape.sequences, shape.frames, 3 * shape.channels)
    else:
        dims = (shape.videos, shape.frames, shape.positions, 3 * shape.channels)
    return torch.randn(dims, device=device, dtype=dtype, generator=gen)


def run(args: argparse.Namespace, shapes: list[Shape] | None = None, layouts: list[str] | None = None,
        on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Time every (shape, layout, impl, pass); ``on_row`` sees each row as it is measured."""
    device, dtype = args.device, DTYPES[args.dtype]
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but no CUDA device is visible")
    if shapes is None:
        shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    if layouts is None:
        layouts = LAYOUT_CHOICES.get(args.layout, [args.layout])
    impls = _available_impls(device)
    if args.impls:
        impls = {k: v for k, v in impls.items() if k in args.impls.split(",") or k == "sdpa"}
    itemsize = torch.empty((), dtype=dtype).element_size()
    rows: list[Row] = []
    gen = torch.Generator(device=device).manual_seed(0)
    for shape in shapes:
        for layout in layouts:
            fused = _fused_input(layout, shape, device, dtype, gen)
            grad = None
            reference = None
            base_ms: dict[str, float] = {}
            for name, fn in impls.items():
                for backward in (False, True) if not args.forward_only else (False,):
                    pass_ = "fwd+bwd" if backward else "fwd"
                    leaf = fused.detach().requires_grad_(backward)
                    call = _make_call(name, fn, layout, shape, leaf)
                    try:
                        out = call()
                    except Exception as exc:  # one backend failing (e.g. a grid limit) must not stop the table
                        print(f"# {shape.name} {layout} {name} {pass_}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                        continue
                    err = None
                    if not backward:
                        if name == "sdpa":
                            reference = out.detach()
                        elif reference is not None:
                            err = (out.float() - reference.float()).abs().max().item()
                    if backward:
                        if grad is None:
                            grad = torch.randn(out.shape, device=device, dtype=dtype, generator=gen)

                        def step(call=call, leaf=leaf):
                            return torch.autograd.grad(call(), leaf, grad.view(out.shape))

                    else:

                        def step(call=call):
                            with torch.no_grad():
                                return call()

                    ms = _time_ms(step, device, args.repeats, args.warmup)
                    if name == "sdpa":
                        base_ms[pass_] = ms
                    ideal_ms = _bytes_moved(shape, itemsize, backward) / (args.peak_gbps * 1e9) * 1e3
                    rows.append(Row(
                        shape=shape.name, layout=layout, impl=name, pass_=pass_, ms=ms,
                        ratio_vs_sdpa=ms / base_ms[pass_] if pass_ in base_ms else None,
                        bandwidth_fraction=ideal_ms / ms if device == "cuda" else None,
                        max_err_vs_sdpa=err,
                    ))
                    if on_row is not None:
                        on_row(rows[-1])
                    del out
            del fused
            if device == "cuda":
                torch.cuda.empty_cache()
    return rows


def _fmt(x: float | None, spec: str) -> str:
    width = int(spec.split(".")[0])
    return "-".rjust(width) if x is None else format(x, spec)


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"# device={args.device} dtype={args.dtype} peak={args.peak_gbps} GB/s; "
          "ratio = ms / sdpa ms (< 1 is faster); bw = minimum bytes / peak bandwidth / time")
    header = f"{'shape':<16} {'layout':<7} {'impl':<9} {'pass':<8} {'ms':>9} {'ratio':>7} {'bw':>6} {'max_err':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.shape:<16} {r.layout:<7} {r.impl:<9} {r.pass_:<8} {r.ms:>9.3f} {_fmt(r.ratio_vs_sdpa, '7.2f')} "
              f"{_fmt(r.bandwidth_fraction, '6.1%')} {_fmt(r.max_err_vs_sdpa, '9.2e')}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: fp16 on cuda, fp32 on cpu")
    p.add_argument("--layout", choices=["module", "packed", "fib", "both", "all"], default="all",
                   help="both = packed and fib; all = module, packed and fib")
    p.add_argument("--impls", default="", help="comma list to restrict (sdpa is always kept as the baseline)")
    p.add_argument("--quick", action="store_true", help="tiny shapes only (CPU smoke runs)")
    p.add_argument("--forward-only", action="store_true")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case (median reported)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--peak-gbps", type=float, default=3350.0, help="peak memory bandwidth (H100 SXM: 3350)")
    p.add_argument("--out", type=Path, default=None, help="write rows as JSON, e.g. benchmarks/results/h100.json")
    args = p.parse_args(argv)
    if args.dtype is None:
        args.dtype = "fp16" if args.device == "cuda" else "fp32"
    if args.repeats is None:
        args.repeats = 20 if args.device == "cuda" else 3
    if args.warmup is None:
        args.warmup = 5 if args.device == "cuda" else 1
    if args.device == "cpu" and not args.quick:
        print("# note: full shapes on CPU are slow; use --quick")
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    rows = run(args)
    print_table(rows, args)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
            "dtype": args.dtype,
            "torch": torch.__version__,
            "peak_gbps": args.peak_gbps,
        }
        payload = {"meta": meta, "rows": [{**asdict(r), "pass": r.pass_} for r in rows]}
        args.out.write_text(json.dumps(payload, indent=2))
    return rows


if __name__ == "__main__":
    main()

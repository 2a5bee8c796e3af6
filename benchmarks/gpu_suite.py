"""One prepared GPU run: motionkit against SDPA, xformers and diffusers, in at most 8 minutes on an H100/H200.

Sections, each in its own process with its own time budget (a failure or timeout is recorded and the
run goes on; a wall-clock guard covers the whole run):

  device    GPU name, peak HBM bandwidth (from a table by name) and a measured large-copy bandwidth
  kernel    fused Triton temporal attention vs SDPA (and xformers if installed) at every SD1.5 512 px and
            SDXL 1024 px motion-module level, 16 frames, fp16 and bf16, forward and forward+backward,
            timed from the attention's input layout to its output layout; fraction of the bandwidth
            limit; a per-shape verdict, which becomes the ``auto`` backend's decision table
  module    one motion module per SD1.5 level, forward and forward+backward, fp16, vs diffusers
  sampling  end-to-end fp16 sampling step at 16 x 512 x 512 on SD1.5-shaped random weights, vs
            diffusers' AnimateDiffPipeline (same weights; tiny text encoder)
  train     one bf16-autocast training step of a motion adapter in a frozen SD1.5 UNet, vs diffusers
  memory    peak GPU memory (max_memory_allocated) of 16 x 512 x 512 sampling with model CPU offload,
            SD-sized VAE decode included

Targets (pass / fail in the table): kernel >= 2x SDPA at >= 60 % of the bandwidth limit; end-to-end
step >= 1.25x diffusers; 16 x 512^2 with offload under 8 GB.

``--dry-run`` (no GPU): compiles the Triton kernels for sm_90 at every suite shape, builds the
full-size models on the meta device, and runs every section's code at toy size on CPU (Triton under
its interpreter), writing the same JSON / markdown marked "dry run". Nothing in a dry run is a
measurement.

    benchmarks/gpu_suite.sh                     # GPU: benchmarks/results/gpu_suite.{json,md}
    benchmarks/gpu_suite.sh --write-policy      # also rewrite motionkit/kernels/auto_policy.json for this GPU
    benchmarks/gpu_suite.sh --dry-run           # CPU: benchmarks/results/gpu_suite_dry_run.{json,md}
    python benchmarks/gpu_suite.py --sections device,kernel --out-dir /some/folder
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
sys.path[:0] = [str(ROOT), str(BENCHMARKS)]  # run from a checkout; the bench_* modules import `common`

import torch  # noqa: E402

from motionkit.kernels import auto_policy  # noqa: E402

# name -> (seconds on a GPU, seconds in a dry run); the GPU budgets sum to under the 460 s guard.
SECTION_BUDGETS: dict[str, tuple[int, int]] = {
    "device": (20, 60),
    "compile": (0, 120),  # dry run only: a GPU run compiles the kernels by running them
    "kernel": (80, 120),
    "module": (45, 90),
    "sampling": (100, 120),
    "train": (110, 120),
    "memory": (100, 120),
}
GPU_BUDGET_S = 460
DRY_BUDGET_S = 420
MIN_SECTION_S = 10  # a section is skipped rather than started with less time than this

KERNEL_TARGET_SPEEDUP = 2.0
KERNEL_TARGET_BANDWIDTH = 0.60
E2E_TARGET_SPEEDUP = 1.25
MEMORY_TARGET_BYTES = 8 * 10**9  # "8 GB", decimal: the stricter reading

# Peak HBM bandwidth in GB/s by device name (vendor data sheets), most specific pattern first.
PEAK_BANDWIDTH_GBPS: list[tuple[str, float]] = [
    ("gh200", 4000.0),
    ("h200", 4800.0),
    ("h100 nvl", 3900.0),
    ("h100 pcie", 2000.0),
    ("h100", 3350.0),  # SXM / "80GB HBM3"
    ("h800", 3350.0),
    ("b200", 8000.0),
    ("a100-sxm4-80gb", 2039.0),
    ("a100 80gb pcie", 1935.0),
    ("a100-pcie-80gb", 1935.0),
    ("a100", 1555.0),  # 40 GB parts
    ("l40s", 864.0),
    ("l40", 864.0),
    ("a10g", 600.0),
    ("a10", 600.0),
    ("rtx 4090", 1008.0),
    ("rtx 3090", 936.0),
    ("v100", 900.0),
    ("l4", 300.0),
    ("t4", 320.0),
]

DRY_DEVICE_NAME = "cpu (dry run)"
KERNEL_DTYPES = ("fp16", "bf16")
KERNEL_LAYOUTS = ["module", "fib"]
# SD1.5 motion-module levels at 512 px: (channels, latent positions a side).
SD15_MODULE_LEVELS = [(320, 64), (640, 32), (1280, 16), (1280, 8)]
BACKENDS = ["auto", "sdpa", "triton"]


def spec_bandwidth_gbps(device_name: str) -> float | None:
    name = device_name.lower()
    return next((gbps for pattern, gbps in PEAK_BANDWIDTH_GBPS if pattern in name), None)


def toy_shapes():
    import bench_temporal_attention as bta

    # Two head dims (two decision-table keys) with a handful of (sequence, head) pairs each.
    return [bta.Shape("toy-d40", 1, 4, 16, 80, 2), bta.Shape("toy-d80", 1, 2, 16, 160, 2)]


# ---------------------------------------------------------------------------------- records ----


class SectionRecord:
    """A section's results, rewritten atomically after every addition so a killed section leaves what it had."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = {}

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self._flush()

    def append(self, key: str, value: Any) -> None:
        self.data.setdefault(key, []).append(value)
        self._flush()

    def _flush(self) -> None:
        from motionkit.utils.atomic import atomic_write

        with atomic_write(self.path) as handle:
            json.dump(self.data, handle, indent=1, default=str)


class Context:
    def __init__(self, args: argparse.Namespace):
        self.dry_run: bool = args.dry_run
        self.device = "cpu" if args.dry_run else "cuda"
        self.copy_gbps: float | None = args.copy_gbps
        # The device section passes its figure on; should it have failed, the data sheet still speaks.
        self.peak_gbps: float | None = args.peak_gbps or (None if args.dry_run else spec_bandwidth_gbps(device_name()))


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else DRY_DEVICE_NAME


def auto_choice(device: str, dtype: torch.dtype, frames: int, channels: int, heads: int, sequences: int,
                training: bool) -> str:
    """What the real ``auto`` dispatch picks for a query of this shape (a tensor on ``device``, never filled)."""
    from motionkit.kernels import dispatch

    query = torch.empty(sequences, frames, channels, device=device, dtype=dtype, requires_grad=training)
    with torch.set_grad_enabled(training):
        return dispatch.resolve_backend("auto", query, heads)


def meta_models() -> dict[str, Any]:
    """Build the full-size models on the meta device: configs are checked without memory or time."""
    from diffusers import AutoencoderKL

    from common import SD_VAE_CONFIG
    from motionkit import MotionAdapter
    from motionkit.modules.attention import TemporalAttention
    from motionkit.tiny import tiny_unet

    with torch.device("meta"):
        unet = tiny_unet("sd15")
        adapter = MotionAdapter.from_unet(unet, preset="animatediff-v2", temporal_norm="across_frames")
        vae = AutoencoderKL(**SD_VAE_CONFIG)
    attention = {(m.to_q.in_features, m.heads) for m in adapter.modules() if isinstance(m, TemporalAttention)}
    return {
        "sd15_unet_params_M": round(sum(p.numel() for p in unet.parameters()) / 1e6, 1),
        "adapter_params_M": round(sum(p.numel() for p in adapter.parameters()) / 1e6, 1),
        "sd_vae_params_M": round(sum(p.numel() for p in vae.parameters()) / 1e6, 1),
        "adapter_attention_channels_heads": sorted(attention),
        # The kernel section's SD1.5 shapes must be the ones the adapter really runs.
        "shapes_match_adapter": attention == {(c, 8) for c, _ in SD15_MODULE_LEVELS},
    }


# --------------------------------------------------------------------------------- sections ----


def section_device(rec: SectionRecord, ctx: Context) -> None:
    import bench_temporal_attention as bta

    import diffusers

    versions = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                "diffusers": diffusers.__version__}
    for package in ("triton", "xformers"):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            versions[package] = None
    rec.put("versions", versions)
    if ctx.dry_run:
        rec.put("name", DRY_DEVICE_NAME)
        rec.put("note", "no CUDA device: dry run" if not torch.cuda.is_available() else "dry run requested")
        copy_bytes = 64 * 2**20
    else:
        props = torch.cuda.get_device_properties(0)
        rec.put("name", props.name)
        rec.put("capability", f"sm_{props.major}{props.minor}")
        rec.put("memory_gib", round(props.total_memory / 2**30, 1))
        rec.put("multiprocessors", props.multi_processor_count)
        copy_bytes = 2 * 2**30
    src = torch.empty(copy_bytes, dtype=torch.uint8, device=ctx.device)
    dst = torch.empty_like(src)
    ms = bta._time_ms(lambda: dst.copy_(src), ctx.device, repeats=3 if ctx.dry_run else 10, warmup=1 if ctx.dry_run else 3)
    copy_gbps = 2 * copy_bytes / (ms / 1e3) / 1e9  # read + write
    spec = None if ctx.dry_run else spec_bandwidth_gbps(rec.data["name"])
    rec.put("copy_gbps", round(copy_gbps, 1))
    rec.put("spec_gbps", spec)
    rec.put("peak_gbps_used", spec or round(copy_gbps, 1))
    rec.put("peak_source", "data sheet" if spec else "measured copy")


def section_compile(rec: SectionRecord, ctx: Context) -> None:
    """Compile fwd/bwd for sm_90 at every suite (frames, head dim, dtype): registers, spills, shared memory."""
    import bench_temporal_attention as bta
    import kernel_resources

    keys = sorted({(s.frames, s.channels // s.heads) for s in bta.FULL_SHAPES})
    for kind in ("fwd", "bwd"):
        for dtype in KERNEL_DTYPES:
            for frames, head_dim in keys:
                r = kernel_resources.measure(kind, dtype, frames, head_dim, arch=90)
                ok = r.spill_bytes == 0 and r.shared_bytes <= 96 * 1024
                rec.append("kernels", {**asdict(r), "occupancy": round(r.occupancy, 3), "ok": ok})


def kernel_verdicts(rows: list[dict[str, Any]], shapes: list[Any], peak_gbps: float | None,
                    copy_gbps: float | None = None) -> list[dict[str, Any]]:
    """Per (dtype, shape): kernel speedup over SDPA, fraction of the bandwidth limit, target verdict and the
    decision-table winner, from the module-layout rows (the layout the motion module calls attention with)."""
    import bench_temporal_attention as bta

    ms = {(r["dtype"], r["shape"], r["layout"], r["impl"], r["pass"]): r["ms"] for r in rows}
    verdicts = []
    for dtype in sorted({r["dtype"] for r in rows}):
        itemsize = torch.empty((), dtype=bta.DTYPES[dtype]).element_size()
        for shape in shapes:
            def speedup(layout: str, pass_: str) -> float | None:
                base, ours = ms.get((dtype, shape.name, layout, "sdpa", pass_)), ms.get((dtype, shape.name, layout, "triton", pass_))
                return round(base / ours, 3) if base and ours else None

            fwd_ms = ms.get((dtype, shape.name, "module", "triton", "fwd"))
            achieved = bta._bytes_moved(shape, itemsize, False) / (fwd_ms / 1e3) / 1e9 if fwd_ms else None
            fraction = round(achieved / peak_gbps, 3) if achieved and peak_gbps else None
            inference, training = speedup("module", "fwd"), speedup("module", "fwd+bwd")
            meets = inference is not None and fraction is not None and (
                inference >= KERNEL_TARGET_SPEEDUP and fraction >= KERNEL_TARGET_BANDWIDTH)
            verdicts.append({
                "dtype": dtype, "shape": shape.name, "frames": shape.frames, "head_dim": shape.channels // shape.heads,
                "pairs": shape.sequences * shape.heads,
                "speedup_inference": inference, "speedup_training": training,
                "speedup_inference_fib": speedup("fib", "fwd"), "speedup_training_fib": speedup("fib", "fwd+bwd"),
                "achieved_gbps": round(achieved, 1) if achieved else None, "bandwidth_fraction": fraction,
                "bandwidth_fraction_of_copy": round(achieved / copy_gbps, 3) if achieved and copy_gbps else None,
                "meets_target": meets,
                "inference": auto_policy.winner(inference), "training": auto_policy.winner(training),
            })
    return verdicts


def policy_entries(verdicts: list[dict[str, Any]]) -> list[auto_policy.PolicyEntry]:
    return [
        auto_policy.PolicyEntry(
            dtype=v["dtype"], frames=v["frames"], head_dim=v["head_dim"], pairs=v["pairs"], inference=v["inference"],
            training=v["training"], speedup_inference=v["speedup_inference"], speedup_training=v["speedup_training"],
        )
        for v in verdicts
    ]


def section_kernel(rec: SectionRecord, ctx: Context) -> None:
    import bench_temporal_attention as bta

    shapes = toy_shapes() if ctx.dry_run else bta.FULL_SHAPES
    rec.put("device_name", device_name())
    rec.put("peak_gbps", ctx.peak_gbps)
    for dtype in KERNEL_DTYPES:
        args = argparse.Namespace(
            device=ctx.device, dtype=dtype, impls="triton,xformers", forward_only=False, quick=False, layout=None,
            repeats=1 if ctx.dry_run else 20, warmup=0 if ctx.dry_run else 5, peak_gbps=ctx.peak_gbps or 1.0,
        )

        def on_row(row: Any, dtype: str = dtype) -> None:
            fields = {k: v for k, v in asdict(row).items() if k != "pass_"}
            rec.append("rows", {**fields, "pass": row.pass_, "dtype": dtype, "ms": round(row.ms, 4)})

        bta.run(args, shapes=shapes, layouts=KERNEL_LAYOUTS, on_row=on_row)
    verdicts = kernel_verdicts(rec.data.get("rows", []), shapes, ctx.peak_gbps, ctx.copy_gbps)
    rec.put("verdicts", verdicts)
    rec.put("policy_entries", [asdict(e) for e in policy_entries(verdicts)])


def set_backend(model: Any, backend: str) -> None:
    for module in model.modules():
        if hasattr(module, "set_backend"):
            module.set_backend(backend)


def section_module(rec: SectionRecord, ctx: Context) -> None:
    import bench_motion_module as bmm

    levels = [(64, 2)] if ctx.dry_run else SD15_MODULE_LEVELS
    args = argparse.Namespace(dtype="fp32" if ctx.dry_run else "fp16", device=ctx.device, frames=4 if ctx.dry_run else 16,
                              batch=1 if ctx.dry_run else 2, repeats=1 if ctx.dry_run else 5, backends=BACKENDS)
    dtype = bmm.DTYPES[args.dtype]
    for channels, latent in levels:
        sequences = args.batch * latent * latent
        choices = {mode: auto_choice(ctx.device, dtype, args.frames, channels, 8, sequences, mode == "training")
                   for mode in ("inference", "training")}
        for row in bmm.bench_level(channels, latent, args):
            rec.append("rows", {**row, "speedup_vs_diffusers": round(1 / row["ratio"], 3), "auto_chose": choices})


def section_sampling(rec: SectionRecord, ctx: Context) -> None:
    import bench_sampling as bs

    if ctx.dry_run:
        rec.put("full_size_models", meta_models())
    unet, dtype = ("tiny-sd", torch.float32) if ctx.dry_run else ("sd15", torch.float16)
    frames, size, steps, repeats = (4, 16, 1, 1) if ctx.dry_run else (16, 512, 5, 3)
    rec.put("config", {"unet": unet, "dtype": str(dtype), "frames": frames, "size": size, "steps": steps,
                       "repeats": repeats, "guidance": 7.5, "scheduler": "ddim"})
    t0 = time.perf_counter()
    ours, theirs = bs.build(unet, ctx.device, dtype)
    rec.put("build_s", round(time.perf_counter() - t0, 1))
    call = dict(prompt="a corgi running on the beach", negative_prompt="blurry", num_frames=frames, height=size,
                width=size, num_inference_steps=steps, guidance_scale=7.5, output_type="latent")
    variants: dict[str, Callable[[], Any]] = {}

    def runner(pipe: Any, backend: str | None) -> Callable[[], Any]:
        def run() -> Any:
            if backend is not None:
                pipe.adapter.set_attention_backend(backend)
            return pipe(**call, generator=torch.Generator("cpu").manual_seed(0))
        return run

    variants["diffusers"] = runner(theirs, None)
    for backend in BACKENDS:
        variants[f"motionkit-{backend}"] = runner(ours, backend)
    if not ctx.dry_run:  # the interpreted kernel makes a dry run's calls slow: time them once, cold
        for run in variants.values():
            run()  # warm-up: allocator, kernel compiles, lazy inits
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(repeats):  # interleaved
        for name, run in variants.items():
            samples[name].append(bs.measure(run, ctx.device))
    base = statistics.median(t for t, _ in samples["diffusers"]) / steps
    for name, runs in samples.items():
        per_step = statistics.median(t for t, _ in runs) / steps
        rec.append("rows", {"pipeline": name, "ms_per_step": round(per_step * 1e3, 2),
                            "peak_mib": round(max(m for _, m in runs), 1), "speedup_vs_diffusers": round(base / per_step, 3)})


def section_train(rec: SectionRecord, ctx: Context) -> None:
    import bench_train as bt

    unet = "tiny-sd" if ctx.dry_run else "sd15"
    args = argparse.Namespace(device=ctx.device, frames=4 if ctx.dry_run else 16, batch=1, steps=1 if ctx.dry_run else 3,
                              warmup=0 if ctx.dry_run else 1, gradient_checkpointing=False, autocast="bf16")
    row = bt.bench(unet, args)
    rec.put("rows", [{**row, "speedup_vs_diffusers": round(1 / row["time_ratio"], 3)}])


def section_memory(rec: SectionRecord, ctx: Context) -> None:
    """bench_memory's own child processes: each (pipeline, decode chunk) gets a fresh allocator."""
    if ctx.dry_run:
        rec.put("full_size_models", meta_models())
    option = "none" if ctx.dry_run else "offload_model"  # offload needs CUDA
    unet, dtype, frames, size, steps = ("tiny-sd", "float32", 4, 32, 1) if ctx.dry_run else ("sd15", "float16", 16, 512, 2)
    rec.put("config", {"option": option, "unet": unet, "vae": "sd", "dtype": dtype, "frames": frames, "size": size,
                       "steps": steps})
    threads = 1 if ctx.dry_run else max(1, os.cpu_count() or 1)
    for pipeline, chunk in (("motionkit", 16), ("diffusers", 16), ("motionkit", 2)):
        command = [sys.executable, str(BENCHMARKS / "bench_memory.py"), "--child", pipeline, option, "--device", ctx.device,
                   "--dtype", dtype, "--unet", unet, "--vae", "sd", "--frames", str(frames), "--size", str(size),
                   "--steps", str(steps), "--threads", str(threads), "--decode-chunk", str(chunk)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        row: dict[str, Any] = {"pipeline": pipeline, "decode_chunk": chunk}
        if done.returncode != 0:
            row["error"] = last_error_line(done.stderr)
        else:
            row.update(json.loads(done.stdout.strip().splitlines()[-1]))
        rec.append("rows", row)


SECTIONS: dict[str, Callable[[SectionRecord, Context], None]] = {
    "device": section_device,
    "compile": section_compile,
    "kernel": section_kernel,
    "module": section_module,
    "sampling": section_sampling,
    "train": section_train,
    "memory": section_memory,
}


def run_child(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    if args.dry_run:
        torch.set_num_threads(1)
    if args.policy_from is not None:
        auto_policy.set_active_policy(auto_policy.load_policy(args.policy_from))
    rec = SectionRecord(args.section_out)
    rec.put("policy", args.policy_from.name if args.policy_from else "shipped")
    SECTIONS[args.section](rec, Context(args))


# ------------------------------------------------------------------------------ orchestration ----


class Stopped(Exception):
    """SIGTERM / SIGINT reached the driver: stop the running section and write what there is."""


def _raise_stopped(signum: int, frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def last_error_line(text: str) -> str:
    """The exception line of a traceback (the last unindented line), with the checkout's path cut off."""
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith((" ", "\t", "Traceback"))]
    return (errors or lines or ["(no output)"])[-1].replace(f"{ROOT}{os.sep}", "")[:500]


def run_section(name: str, timeout_s: float, args: argparse.Namespace, work: Path, extra: list[str]) -> dict[str, Any]:
    out, log = work / f"{name}.json", work / f"{name}.log"
    out.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--section", name, "--section-out", str(out), *extra]
    if args.dry_run:
        command.append("--dry-run")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    # Triton decides at import whether to interpret: the dry run's toy sections run the kernels on CPU,
    # its compile section (and every GPU section) must compile them.
    env.pop("TRITON_INTERPRET", None)
    if args.dry_run:
        env.setdefault("OMP_NUM_THREADS", "1")
        if name != "compile":
            env["TRITON_INTERPRET"] = "1"
    start = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
            status = "ok" if rc == 0 else "error"
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            status = "timeout"
        except BaseException:
            _kill_group(proc)
            raise
    record = {"status": status, "seconds": round(time.perf_counter() - start, 1), "budget_s": round(timeout_s, 1),
              "log": log.name, "error": None, "result": {}}
    if out.exists():
        record["result"] = json.loads(out.read_text())
    if status == "error":
        record["error"] = last_error_line(log.read_text(errors="replace") if log.exists() else "")
    elif status == "timeout":
        record["error"] = f"ran past its {timeout_s:.0f} s budget; partial results kept"
    return record


def _select_sections(args: argparse.Namespace) -> list[str]:
    if args.sections:
        names = [n.strip() for n in args.sections.split(",") if n.strip()]
        unknown = [n for n in names if n not in SECTIONS]
        if unknown:
            raise SystemExit(f"gpu_suite: unknown section {unknown[0]!r}: choose from {', '.join(SECTIONS)}")
        return [n for n in SECTIONS if n in names]  # always in dependency order
    return [n for n in SECTIONS if args.dry_run or n != "compile"]


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    out_dir: Path = args.out_dir
    stem = "gpu_suite_dry_run" if args.dry_run else "gpu_suite"
    work = out_dir / f"{stem}_logs"
    work.mkdir(parents=True, exist_ok=True)
    budget = args.budget or (DRY_BUDGET_S if args.dry_run else GPU_BUDGET_S)
    started = time.perf_counter()
    deadline = started + budget
    report: dict[str, Any] = {
        "suite": "motionkit gpu suite", "version": 1, "dry_run": args.dry_run,
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "budget_s": budget, "sections": {}, "policy": {"proposed": None, "written": None, "note": None},
    }
    if args.dry_run:
        report["note"] = ("dry run: no CUDA device" if not torch.cuda.is_available() else "dry run") + \
            " -- kernels compiled for sm_90, full-size models built on the meta device, every section run at toy " \
            "size on CPU; no figure here is a measurement"
    extra: list[str] = []
    peak, copy = None, None
    previous = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for name in _select_sections(args):
            remaining = deadline - time.perf_counter()
            section_budget = SECTION_BUDGETS[name][1 if args.dry_run else 0]
            if remaining < MIN_SECTION_S:
                report["sections"][name] = {"status": "skipped", "seconds": 0, "budget_s": section_budget,
                                            "error": "the run's wall-clock budget was spent", "result": {}}
                continue
            timeout = min(section_budget, remaining)
            print(f"[gpu_suite] {name}: up to {timeout:.0f} s ...", flush=True)
            record = run_section(name, timeout, args, work, [*extra, *_peak_args(peak, copy)])
            report["sections"][name] = record
            print(f"[gpu_suite] {name}: {record['status']} in {record['seconds']} s"
                  + (f" -- {record['error']}" if record["error"] else ""), flush=True)
            if name == "device" and record["status"] == "ok":
                peak, copy = record["result"].get("peak_gbps_used"), record["result"].get("copy_gbps")
                report["device"] = record["result"]
            if name == "kernel" and record["result"].get("policy_entries") is not None:
                extra = _propose_policy(record, report, args, work)
    except Stopped as stop:
        report["stopped"] = f"stopped by {stop}: sections after the running one did not run"
        print(f"[gpu_suite] stopped by {stop}; writing what there is", flush=True)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report.setdefault("device", {"name": DRY_DEVICE_NAME if args.dry_run else "unknown (device section failed)"})
    report["targets"] = targets(report)
    write_report(report, out_dir / f"{stem}.json", out_dir / f"{stem}.md")
    return report


def _peak_args(peak: float | None, copy: float | None) -> list[str]:
    args = []
    if peak:
        args += ["--peak-gbps", str(peak)]
    if copy:
        args += ["--copy-gbps", str(copy)]
    return args


def _propose_policy(record: dict[str, Any], report: dict[str, Any], args: argparse.Namespace, work: Path) -> list[str]:
    """Turn the kernel section's verdicts into a decision table for this device; the later sections run with
    it (so their ``auto`` rows show what the table would give), and ``--write-policy`` commits it."""
    result = record["result"]
    device = result.get("device_name", DRY_DEVICE_NAME)
    entries = [auto_policy.PolicyEntry(**e) for e in result["policy_entries"]]
    proposed = auto_policy.merge_device(auto_policy.load_policy(args.policy_path), device, entries)
    proposed_path = work / "auto_policy.proposed.json"
    about = {device: {"date": report["started"], "torch": torch.__version__, "dry_run": args.dry_run,
                      "kernel_section": record["status"]}}
    auto_policy.write_policy(proposed, proposed_path, about)
    report["policy"]["proposed"] = {"device": device, "entries": result["policy_entries"]}
    if args.write_policy:
        if record["status"] != "ok":
            report["policy"]["note"] = f"not written: the kernel section ended with {record['status']}"
        else:
            existing = json.loads(args.policy_path.read_text()) if args.policy_path.exists() else {}
            measured = {**existing.get("measured", {}), **about}
            auto_policy.write_policy(proposed, args.policy_path, measured)
            report["policy"]["written"] = _shown_path(args.policy_path)
    return ["--policy-from", str(proposed_path)]


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name


# ----------------------------------------------------------------------------------- targets ----


def _verdict(ok: bool | None, dry_run: bool) -> str:
    if dry_run:
        return "dry run"
    return "not measured" if ok is None else ("pass" if ok else "fail")


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    dry = report["dry_run"]
    sections = report["sections"]
    rows = []

    kernel = [v for v in sections.get("kernel", {}).get("result", {}).get("verdicts", []) if v["dtype"] == "fp16"]
    measured = [v for v in kernel if v["speedup_inference"] is not None]
    if measured:
        worst = min(measured, key=lambda v: (v["speedup_inference"], v["bandwidth_fraction"] or 0))
        passing = sum(v["meets_target"] for v in measured)
        text = (f"{passing}/{len(kernel)} shapes meet it; worst {worst['shape']}: {worst['speedup_inference']:.2f}x, "
                f"{_pct(worst['bandwidth_fraction'])} of bandwidth")
        ok = passing == len(kernel)
    else:
        text, ok = "no kernel timings", None
    rows.append({"target": "Triton kernel vs SDPA, fp16 forward, module layout, every SD1.5/SDXL level",
                 "goal": f">= {KERNEL_TARGET_SPEEDUP:g}x at >= {KERNEL_TARGET_BANDWIDTH:.0%} of HBM bandwidth",
                 "measured": text, "verdict": _verdict(ok, dry)})

    sampling = {r["pipeline"]: r for r in sections.get("sampling", {}).get("result", {}).get("rows", [])}
    auto = sampling.get("motionkit-auto")
    best = max((r for n, r in sampling.items() if n.startswith("motionkit")), key=lambda r: r["speedup_vs_diffusers"], default=None)
    if auto:
        text = f"auto {auto['speedup_vs_diffusers']:.2f}x ({auto['ms_per_step']} ms/step)"
        if best and best is not auto:
            text += f"; best {best['pipeline']} {best['speedup_vs_diffusers']:.2f}x"
        ok = auto["speedup_vs_diffusers"] >= E2E_TARGET_SPEEDUP
    else:
        text, ok = "no sampling timings", None
    rows.append({"target": "end-to-end fp16 sampling step, 16x512x512, vs diffusers AnimateDiffPipeline",
                 "goal": f">= {E2E_TARGET_SPEEDUP:g}x", "measured": text, "verdict": _verdict(ok, dry)})

    memory = sections.get("memory", {}).get("result", {}).get("rows", [])
    ours = next((r for r in memory if r["pipeline"] == "motionkit" and r["decode_chunk"] == 16), None)
    key = "process_peak_mib" if dry else "gpu_peak_mib"
    if ours and key in ours:
        peak_bytes = ours[key] * 2**20
        text = f"{peak_bytes / 1e9:.2f} GB" + (" (CPU process peak, no offload: dry run)" if dry else "")
        theirs = next((r for r in memory if r["pipeline"] == "diffusers" and key in r), None)
        if theirs:
            text += f"; diffusers {theirs[key] * 2**20 / 1e9:.2f} GB"
        ok = peak_bytes < MEMORY_TARGET_BYTES
    else:
        text, ok = (ours or {}).get("error", "no memory figures"), None
    rows.append({"target": "peak GPU memory, 16x512x512 fp16 with model CPU offload (max_memory_allocated)",
                 "goal": "< 8 GB", "measured": text, "verdict": _verdict(ok, dry)})
    return rows


# ------------------------------------------------------------------------------------ report ----


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _num(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def md_table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def markdown(report: dict[str, Any]) -> str:
    dry = report["dry_run"]
    sections = report["sections"]
    device = report.get("device", {})
    title = "motionkit GPU suite" + (" -- DRY RUN (no measurement)" if dry else "")
    lines = [f"# {title}", ""]
    if dry:
        lines += [f"**{report['note']}.**", ""]
    lines += [f"Device: {device.get('name')}"
              + (f", peak {device.get('peak_gbps_used')} GB/s ({device.get('peak_source')}), measured copy "
                 f"{device.get('copy_gbps')} GB/s" if device.get("peak_gbps_used") else ""),
              f"Started {report['started']}, {report['wall_s']} s of a {report['budget_s']} s budget.", ""]
    if report.get("stopped"):
        lines += [f"**{report['stopped']}**", ""]
    lines += ["## Targets", ""]
    lines += md_table(["target", "goal", "measured", "verdict"],
                      [[t["target"], t["goal"], t["measured"], t["verdict"]] for t in report["targets"]])
    lines += ["## Sections", ""]
    lines += md_table(["section", "status", "seconds", "budget s", "error"],
                      [[n, s["status"], s["seconds"], s["budget_s"], s.get("error") or ""] for n, s in sections.items()])

    kernel = sections.get("kernel", {}).get("result", {})
    if kernel.get("rows"):
        lines += ["## Temporal attention (ms, median; speedup = SDPA ms / ms)", ""]
        by_key: dict[tuple, dict[str, float]] = {}
        for r in kernel["rows"]:
            by_key.setdefault((r["dtype"], r["shape"], r["layout"], r["pass"]), {})[r["impl"]] = r["ms"]
        impls = [i for i in ("sdpa", "triton", "xformers") if any(i in v for v in by_key.values())]
        table = []
        for (dtype, shape, layout, pass_), times in by_key.items():
            cells = [_num(times.get(i)) for i in impls]
            speed = [_num(times["sdpa"] / times[i], ".2f") if times.get(i) and times.get("sdpa") else "-" for i in impls[1:]]
            table.append([dtype, shape, layout, pass_, *cells, *speed])
        lines += md_table(["dtype", "shape", "layout", "pass", *[f"{i} ms" for i in impls],
                           *[f"{i} speedup" for i in impls[1:]]], table)
    if kernel.get("verdicts"):
        lines += ["## Per-shape verdict and the auto backend's decision table", "",
                  f"Module layout; bandwidth = minimum bytes / time / peak; winner: triton where its speedup is "
                  f">= {auto_policy.WIN_MARGIN}x, else sdpa.", ""]
        lines += md_table(
            ["dtype", "shape", "F", "d", "pairs", "fwd speedup", "fwd GB/s", "of peak", "of copy", "fwd+bwd speedup",
             "target", "auto (inference)", "auto (training)"],
            [[v["dtype"], v["shape"], v["frames"], v["head_dim"], v["pairs"], _num(v["speedup_inference"], ".2f"),
              _num(v["achieved_gbps"], ".0f"), _pct(v["bandwidth_fraction"]), _pct(v["bandwidth_fraction_of_copy"]),
              _num(v["speedup_training"], ".2f"),
              _verdict(v["meets_target"] if v["speedup_inference"] is not None else None, dry),
              v["inference"], v["training"]] for v in kernel["verdicts"]])
        policy = report["policy"]
        lines += [f"Decision table: {'written to ' + policy['written'] if policy['written'] else 'not written'}"
                  + (f" ({policy['note']})" if policy.get("note") else "")
                  + ("" if policy["written"] else " -- rerun with --write-policy to commit it") + ". "
                  "The sections after this one ran `auto` with this run's table.", ""]

    module = sections.get("module", {}).get("result", {}).get("rows", [])
    if module:
        lines += ["## Motion module (ms, median; speedup = diffusers ms / motionkit ms)", ""]
        lines += md_table(["channels", "latent", "mode", "backend", "motionkit ms", "diffusers ms", "speedup", "auto chose"],
                          [[r["channels"], r["latent"], r["mode"], r["backend"], r["motionkit_ms"], r["diffusers_ms"],
                            r["speedup_vs_diffusers"], "/".join(r["auto_chose"].values())] for r in module])
    sampling = sections.get("sampling", {}).get("result", {})
    if sampling.get("rows"):
        cfg = sampling.get("config", {})
        lines += [f"## Sampling step ({cfg.get('unet')}, {cfg.get('frames')}x{cfg.get('size')}x{cfg.get('size')}, "
                  f"{cfg.get('dtype')}, {cfg.get('steps')} steps, guidance 7.5)", ""]
        lines += md_table(["pipeline", "ms / step", "peak MiB", "speedup vs diffusers"],
                          [[r["pipeline"], r["ms_per_step"], r["peak_mib"], r["speedup_vs_diffusers"]] for r in sampling["rows"]])
    train = sections.get("train", {}).get("result", {}).get("rows", [])
    if train:
        lines += ["## Training step (bf16 autocast, AdamW on the adapter, frozen UNet)", ""]
        lines += md_table(["unet", "frames", "batch", "motionkit s", "diffusers s", "speedup", "peak MB (mk / df)", "max |diff|"],
                          [[r["unet"], r["frames"], r["batch"], r["step_s"]["motionkit"], r["step_s"]["diffusers"],
                            r["speedup_vs_diffusers"],
                            "/".join(str(v) for v in r.get("cuda_peak_MB", {}).values()) or "-",
                            f"{r['prediction_max_abs_diff']:.2e}"] for r in train])
    memory = sections.get("memory", {}).get("result", {})
    if memory.get("rows"):
        cfg = memory.get("config", {})
        key = "process_peak_mib" if dry else "gpu_peak_mib"
        lines += [f"## Peak memory ({cfg.get('option')}, {cfg.get('unet')} + SD VAE, {cfg.get('frames')}x{cfg.get('size')}"
                  f"x{cfg.get('size')}, {cfg.get('dtype')})", ""]
        lines += md_table(["pipeline", "decode chunk", "peak MiB", "call peak MiB", "seconds", "error"],
                          [[r["pipeline"], r["decode_chunk"], _num(r.get(key), ".0f"),
                            _num(r.get("gpu_call_peak_mib" if not dry else "call_peak_mib"), ".0f"),
                            _num(r.get("seconds"), ".1f"), r.get("error", "")] for r in memory["rows"]])
    compiled = sections.get("compile", {}).get("result", {}).get("kernels", [])
    if compiled:
        lines += ["## Kernels compiled for sm_90", ""]
        lines += md_table(["kind", "dtype", "F", "d", "regs", "spill", "shared", "occupancy", "ok"],
                          [[r["kind"], r["dtype"], r["frames"], r["head_dim"], r["registers"], r["spill_bytes"],
                            r["shared_bytes"], _pct(r["occupancy"]), r["ok"]] for r in compiled])
    models = (sections.get("sampling", {}).get("result", {}) or {}).get("full_size_models")
    if models:
        lines += ["## Full-size models built on the meta device", "", "```", json.dumps(models), "```", ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], json_path: Path, md_path: Path) -> None:
    from motionkit.utils.atomic import atomic_write

    with atomic_write(json_path) as handle:
        json.dump(report, handle, indent=1, default=str)
        handle.write("\n")
    with atomic_write(md_path) as handle:
        handle.write(markdown(report))
    print(f"[gpu_suite] wrote {_shown_path(json_path)} and {_shown_path(md_path)}", flush=True)


# --------------------------------------------------------------------------------------- CLI ----


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="no GPU: compile for sm_90, toy sizes on CPU, marked dry run")
    p.add_argument("--out-dir", type=Path, default=BENCHMARKS / "results", help="folder for gpu_suite.json / .md")
    p.add_argument("--sections", default="", help=f"comma list out of {', '.join(SECTIONS)} (default: all)")
    p.add_argument("--budget", type=float, default=None,
                   help=f"wall-clock seconds for the whole run (default {GPU_BUDGET_S}; dry run {DRY_BUDGET_S})")
    p.add_argument("--write-policy", action="store_true",
                   help="write the kernel section's per-shape winners into the auto backend's decision table")
    p.add_argument("--policy-path", type=Path, default=auto_policy.POLICY_PATH, help="decision table to update")
    # One section in this process (the driver starts these).
    p.add_argument("--section", choices=sorted(SECTIONS), help=argparse.SUPPRESS)
    p.add_argument("--section-out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--policy-from", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--peak-gbps", type=float, help=argparse.SUPPRESS)
    p.add_argument("--copy-gbps", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.dry_run and args.write_policy and args.policy_path.resolve() == auto_policy.POLICY_PATH.resolve():
        p.error("--write-policy in a dry run would put toy timings into the shipped decision table: "
                "run on a GPU, or give --policy-path for a scratch copy")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.section:
        run_child(args)
        return None
    if not args.dry_run:
        if torch.version.cuda is None:
            raise SystemExit("gpu_suite: this torch is a CPU build: install a CUDA build of torch (and triton), "
                             "or pass --dry-run to check the suite without a GPU")
        if not torch.cuda.is_available():
            raise SystemExit("gpu_suite: no CUDA device visible: run on a GPU machine, or pass --dry-run")
    else:
        print("[gpu_suite] " + ("no CUDA device: dry run" if not torch.cuda.is_available() else "dry run")
              + " (compile-only kernel checks, toy sizes on CPU; nothing here is a measurement)", flush=True)
    report = orchestrate(args)
    for t in report["targets"]:
        print(f"[gpu_suite] {t['verdict']:>12}: {t['target']}: {t['measured']} (goal {t['goal']})")
    return report


if __name__ == "__main__":
    main()

"""Static resource report for the fused temporal-attention kernels: no GPU needed.

Compiles each launch config the heuristic picks for sm_80 / sm_90 and reads the cubin's resource
usage (registers, spill stack, local memory) with the CUDA binary tools Triton ships, plus the
shared memory from the compile metadata. From those it derives the theoretical occupancy (resident
warps per SM). Register spills and shared memory over the per-block limit are the GPU-only
performance failures the interpreter cannot show; this report (and the test that runs it) keeps
every config in the supported envelope free of both.

Examples:
  python benchmarks/kernel_resources.py                      # frames 16/32, preset head dims
  python benchmarks/kernel_resources.py --frames 16 32 64 --head-dims 40 64 80 128 160 256 --arch 80 90
  python benchmarks/kernel_resources.py --out benchmarks/results/kernel_resources.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
PRESET_HEAD_DIMS = (40, 64, 80, 128, 160)

# Per-SM limits (CUDA occupancy tables): registers, resident warps, resident blocks, shared memory.
SM_LIMITS = {
    80: {"regs": 65536, "warps": 64, "blocks": 32, "shared": 164 * 1024},
    90: {"regs": 65536, "warps": 64, "blocks": 32, "shared": 228 * 1024},
}
_RESOURCE_LINE = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")


@dataclass
class Resources:
    kind: str
    dtype: str
    frames: int
    head_dim: int
    arch: int
    group: int
    block_f: int
    block_dc: int
    n_chunks: int
    num_warps: int
    registers: int
    spill_bytes: int  # per-thread stack frame: register spills (the kernels have no other stack use)
    local_bytes: int
    shared_bytes: int
    warps_per_sm: int

    @property
    def occupancy(self) -> float:
        return self.warps_per_sm / SM_LIMITS[self.arch]["warps"]


def cuobjdump_path() -> Path:
    import triton

    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: this triton build ships no CUDA binary tools")
    return path


def resident_warps(registers: int, shared: int, num_warps: int, arch: int) -> int:
    """Warps one SM holds at once for this kernel (registers are allocated per warp in 256s)."""
    limits = SM_LIMITS[arch]
    regs_per_warp = -(-registers * 32 // 256) * 256
    by_regs = limits["regs"] // (regs_per_warp * num_warps)
    by_shared = limits["shared"] // shared if shared else limits["blocks"]
    by_warps = limits["warps"] // num_warps
    return min(by_regs, by_shared, by_warps, limits["blocks"]) * num_warps


def measure(kind: str, dtype_name: str, frames: int, head_dim: int, arch: int, config=None) -> Resources:
    """Compile one config (the heuristic's unless ``config`` is given) and read its resources."""
    from motionkit.kernels import triton_attention as ta

    dtype = DTYPES[dtype_name]
    cfg = config or ta.choose_config(frames, head_dim, dtype, backward=kind == "bwd")
    compiled = ta.compile_for_target(kind, dtype, frames, head_dim, arch, config=cfg)
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        dump = subprocess.run([str(cuobjdump_path()), "--dump-resource-usage", str(cubin)], capture_output=True,
                              text=True, check=True).stdout
    match = _RESOURCE_LINE.search(dump)
    if match is None:
        raise RuntimeError(f"no resource line in cuobjdump output: {dump!r}")
    registers, stack, _, local = (int(x) for x in match.groups())
    shared = compiled.metadata.shared
    return Resources(
        kind=kind, dtype=dtype_name, frames=frames, head_dim=head_dim, arch=arch, group=cfg.group,
        block_f=cfg.block_f, block_dc=cfg.block_dc, n_chunks=cfg.n_chunks, num_warps=cfg.num_warps,
        registers=registers, spill_bytes=stack, local_bytes=local, shared_bytes=shared,
        warps_per_sm=resident_warps(registers, shared, cfg.num_warps, arch),
    )


def report(rows: list[Resources]) -> str:
    header = (f"{'kind':<4} {'dtype':<5} {'F':>3} {'d':>4} {'sm':>3} {'group':>5} {'chunk':>9} {'warps':>5} "
              f"{'regs':>5} {'spill':>6} {'shared':>7} {'occupancy':>9}")
    lines = [header, "-" * len(header)]
    for r in rows:
        chunk = f"{r.n_chunks}x{r.block_dc}"
        lines.append(f"{r.kind:<4} {r.dtype:<5} {r.frames:>3} {r.head_dim:>4} {r.arch:>3} {r.group:>5} {chunk:>9} "
                     f"{r.num_warps:>5} {r.registers:>5} {r.spill_bytes:>6} {r.shared_bytes:>7} {r.occupancy:>9.0%}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", choices=["fwd", "bwd"], default=["fwd", "bwd"])
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp16", "bf16", "fp32"])
    p.add_argument("--frames", nargs="+", type=int, default=[16, 32])
    p.add_argument("--head-dims", nargs="+", type=int, default=list(PRESET_HEAD_DIMS))
    p.add_argument("--arch", nargs="+", type=int, choices=sorted(SM_LIMITS), default=[90])
    p.add_argument("--out", type=Path, default=None, help="write rows as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Resources]:
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("kernel_resources compiles real kernels: run it without TRITON_INTERPRET=1")
    args = parse_args(argv)
    rows = [
        measure(kind, dtype, frames, head_dim, arch)
        for kind in args.kinds for dtype in args.dtypes for frames in args.frames
        for head_dim in args.head_dims for arch in args.arch
    ]
    print(report(rows))
    if args.out is not None:
        from motionkit.utils.atomic import atomic_write

        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.out) as handle:
            json.dump([asdict(r) for r in rows], handle, indent=2)
    return rows


if __name__ == "__main__":
    main()

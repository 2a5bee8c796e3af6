"""The ``auto`` attention backend's decision table: where the fused Triton kernel was measured to win.

``benchmarks/gpu_suite.py --write-policy`` times the kernel against SDPA at SD 1.5 / SDXL
temporal-attention shapes and records, per GPU model and dtype, one entry for each measured
(frames, head dim, sequence-head pairs) with the winner for inference (forward) and for training
(forward + backward). ``auto`` picks the kernel only where the nearest measured entry says it won;
a GPU, dtype, frame count or head dim never measured, or a pair count far outside the measured
ones, gets SDPA, the safe choice.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

POLICY_PATH = Path(__file__).with_name("auto_policy.json")
# The kernel must beat SDPA by this factor to be chosen: a tie within timing noise keeps SDPA.
WIN_MARGIN = 1.05
# An entry also speaks for pair counts up to this factor beyond the smallest / largest measured.
PAIRS_REACH = 2.0
DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
CHOICES = ("triton", "sdpa")


@dataclass(frozen=True)
class PolicyEntry:
    dtype: str  # fp16 / bf16 / fp32
    frames: int
    head_dim: int
    pairs: int  # sequences x heads of the measured call
    inference: str  # winner of the forward: "triton" or "sdpa"
    training: str  # winner of forward + backward
    speedup_inference: float | None = None  # SDPA time / kernel time, as measured
    speedup_training: float | None = None


# Device name (as torch.cuda.get_device_name reports it) -> its measured entries.
Policy = dict[str, list[PolicyEntry]]


def winner(speedup: float | None) -> str:
    """The backend a measured speedup (SDPA time / kernel time) calls for; no measurement keeps SDPA."""
    return "triton" if speedup is not None and speedup >= WIN_MARGIN else "sdpa"


def parse_policy(payload: dict[str, Any]) -> Policy:
    policy: Policy = {}
    for device, entries in payload.get("devices", {}).items():
        parsed = [PolicyEntry(**entry) for entry in entries]
        for entry in parsed:
            if entry.inference not in CHOICES or entry.training not in CHOICES:
                raise ValueError(f"policy entry for {device!r} names a backend outside {CHOICES}: {entry}")
        policy[device] = parsed
    return policy


def load_policy(path: Path = POLICY_PATH) -> Policy:
    """The table in ``path``; a missing file is an empty table (SDPA everywhere)."""
    if not path.exists():
        return {}
    return parse_policy(json.loads(path.read_text(encoding="utf-8")))


def policy_payload(policy: Policy, about: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "about": "auto attention backend decision table; regenerate with benchmarks/gpu_suite.sh --write-policy",
        "win_margin": WIN_MARGIN,
        "measured": about or {},
        "devices": {device: [asdict(e) for e in entries] for device, entries in sorted(policy.items())},
    }


def write_policy(policy: Policy, path: Path = POLICY_PATH, about: dict[str, Any] | None = None) -> None:
    from motionkit.utils.atomic import atomic_write

    with atomic_write(path) as handle:
        json.dump(policy_payload(policy, about), handle, indent=2)
        handle.write("\n")


def merge_device(policy: Policy, device: str, entries: Iterable[PolicyEntry]) -> Policy:
    """``policy`` with ``device``'s entries replaced by ``entries`` (a new measurement supersedes the old)."""
    return {**policy, device: list(entries)}


def choose(policy: Policy, device: str, dtype: torch.dtype, frames: int, head_dim: int, pairs: int,
           training: bool) -> str:
    """``"triton"`` where the nearest measured entry (same device, dtype, frames and head dim; nearest
    pair count on a log scale, within PAIRS_REACH of the measured range) says the kernel won, else ``"sdpa"``."""
    dtype_name = DTYPE_NAMES.get(dtype)
    candidates = [
        e for e in policy.get(device, ())
        if e.dtype == dtype_name and e.frames == frames and e.head_dim == head_dim
    ]
    if not candidates or pairs <= 0:
        return "sdpa"
    measured = [e.pairs for e in candidates]
    if not min(measured) / PAIRS_REACH <= pairs <= max(measured) * PAIRS_REACH:
        return "sdpa"
    nearest = min(candidates, key=lambda e: abs(math.log(e.pairs) - math.log(pairs)))
    return nearest.training if training else nearest.inference


_active: Policy | None = None


def active_policy() -> Policy:
    """The table ``auto`` consults: the shipped file (read once), unless ``set_active_policy`` replaced it."""
    global _active
    if _active is None:
        _active = load_policy()
    return _active


def set_active_policy(policy: Policy | None) -> None:
    """Consult ``policy`` from now on (benchmarks trying a fresh measurement); ``None`` re-reads the shipped file."""
    global _active
    _active = policy

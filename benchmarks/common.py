"""Timing, tables and result files shared by the benchmark scripts (run as ``python benchmarks/X.py``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import torch


def time_once(fn: Callable[[], Any], device: str) -> float:
    """Seconds for one call; on CUDA the queue is drained before and after."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    """``columns``: (row key, heading) pairs; text columns left-aligned, numbers right-aligned."""
    widths = [max(len(heading), *(len(str(r[key])) for r in rows)) for key, heading in columns]

    def cell(value: Any, width: int) -> str:
        return str(value).rjust(width) if isinstance(value, (int, float)) else str(value).ljust(width)

    print("  ".join(heading.rjust(w) for (_, heading), w in zip(columns, widths)))
    for r in rows:
        print("  ".join(cell(r[key], w) for (key, _), w in zip(columns, widths)))


def write_rows(rows: list[dict[str, Any]], out: Path | None) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=2) + "\n")

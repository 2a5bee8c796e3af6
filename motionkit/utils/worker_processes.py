"""How motionkit starts worker processes (curation's pool, the training DataLoader's workers): spawned, never forked.

A fork copies the parent's memory together with every lock its threads held at that instant (OpenMP's and
OpenCV's thread pools, torch's intra-op threads, PyAV's decoders). Nothing in the child ever releases them,
so a forked worker can sleep forever on its first decode. It happens only in a process that has already
used those threads (a test suite, a notebook that trained before it curated), so it looks random. A spawned
worker starts a fresh interpreter instead: it costs one import of motionkit per worker, and what it is
handed (dataset, function, options) must pickle.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import SpawnContext

__all__ = ["loader_context", "worker_context"]


def worker_context() -> SpawnContext:
    """The start method for motionkit's process pools (``ProcessPoolExecutor(mp_context=...)``)."""
    return multiprocessing.get_context("spawn")


def loader_context(num_workers: int) -> SpawnContext | None:
    """For ``DataLoader(multiprocessing_context=...)``: spawn with workers, ``None`` without (torch refuses
    a context for in-process loading)."""
    return worker_context() if num_workers > 0 else None

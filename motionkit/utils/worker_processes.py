"""How motionkit starts worker processes (curation's pool, the training DataLoader's workers): never by a
plain fork of the calling process.

A fork copies the parent's memory together with every lock its threads held at that instant (OpenMP's and
OpenCV's thread pools, torch's intra-op threads, PyAV's decoders). Nothing in the child ever releases them,
so a forked worker can sleep forever on its first decode. It happens only in a process that has already
used those threads (a test suite, a notebook that trained before it curated), so it looks random.

Workers are forked instead from a fork server: a fresh interpreter, started once per process, that imports
torch and motionkit's data and training modules and then only waits, so no thread of it is inside a lock
when it forks. The first worker costs that start (seconds); later ones (each epoch's loader workers) start
as a plain fork does, with those modules loaded. Where there is no fork server (Windows), workers are
spawned. Either way, what a worker is handed (dataset, function, options) must pickle, and a script that
starts workers needs ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

__all__ = ["loader_context", "worker_context"]

# Imported once by the fork server, so that each worker it forks starts with them loaded (the trainer's
# module holds the loader's collate function).
SERVER_PRELOAD = (
    "torch", "motionkit.data.analysis", "motionkit.data.datasets", "motionkit.data.stream", "motionkit.train.trainer",
)


def worker_context() -> BaseContext:
    """The start method for motionkit's process pools (``ProcessPoolExecutor(mp_context=...)``)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(SERVER_PRELOAD))  # no effect once the server runs; harmless then
    return context


def loader_context(num_workers: int) -> BaseContext | None:
    """For ``DataLoader(multiprocessing_context=...)``: the worker context with workers, ``None`` without
    (torch refuses a context for in-process loading)."""
    return worker_context() if num_workers > 0 else None

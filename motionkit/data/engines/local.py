"""The local engine: the analysis in this process, or in a pool of worker processes on this machine."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from motionkit.data.analysis import CurateOptions, FileResult, analyze_video
from motionkit.errors import MotionkitError
from motionkit.utils.worker_processes import worker_context

Analyze = Callable[[str, CurateOptions, str], FileResult]


def default_workers() -> int:
    """One process per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def local_results(
    jobs: Sequence[tuple[str, str]], options: CurateOptions, workers: int = 1, analyze: Analyze = analyze_video
) -> Iterable[FileResult]:
    """Analyse ``(video, manifest_string)`` jobs, yielding results in job order.

    At most ``4 * workers`` jobs are in flight, which bounds memory; a slow video holds back the
    output (not the workers) until it is done.
    """
    if workers <= 1:
        for video, name in jobs:
            yield analyze(video, options, name)
        return
    pending = iter(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=worker_context()) as pool:
        window: deque[tuple[tuple[str, str], Future[FileResult]]] = deque()

        def submit() -> None:
            job = next(pending, None)
            if job is not None:
                window.append((job, pool.submit(analyze, job[0], options, job[1])))

        for _ in range(4 * workers):
            submit()
        while window:
            job, future = window.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                raise MotionkitError(
                    f"a worker process died (decoder crash?) around {job[0]}; rerun the same command to resume,"
                    " finished files are kept"
                ) from None
            submit()
            yield result

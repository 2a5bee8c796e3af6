"""Worker processes start clean: a lock that one of the parent's threads holds while the workers start
(as OpenMP's or OpenCV's pools may at any instant) is free in every worker. A forked worker would inherit
it held and wait forever; both the curation pool and the training DataLoader's workers are checked."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from motionkit.data.analysis import CurateOptions
from motionkit.data.engines.local import local_results
from motionkit.utils.worker_processes import loader_context

HELD_BY_A_THREAD = threading.Lock()


def lock_is_free(*_: object) -> bool:
    """In a worker: whether the module's lock can be taken (a forked copy stays held by a thread it lacks)."""
    if HELD_BY_A_THREAD.acquire(timeout=1):  # a clean worker takes it at once; a forked copy never
        HELD_BY_A_THREAD.release()
        return True
    return False


class LockProbe(IterableDataset):
    def __iter__(self) -> Iterator[torch.Tensor]:
        yield torch.tensor(lock_is_free())


@pytest.fixture
def lock_held_by_a_thread() -> Iterator[None]:
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with HELD_BY_A_THREAD:
            taken.set()
            release.wait()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    taken.wait()
    assert not lock_is_free()  # the probe itself can fail: here the lock really is held
    yield
    release.set()
    holder.join()


def test_curation_workers_do_not_inherit_held_locks(lock_held_by_a_thread: None) -> None:
    jobs = [(f"video{i}.mp4", f"video{i}.mp4") for i in range(3)]
    assert list(local_results(jobs, CurateOptions(), workers=2, analyze=lock_is_free)) == [True] * 3


def test_loader_workers_do_not_inherit_held_locks(lock_held_by_a_thread: None) -> None:
    loader = DataLoader(LockProbe(), batch_size=None, num_workers=2, multiprocessing_context=loader_context(2))
    assert [bool(item) for item in loader] == [True, True]  # each worker yields its own probe


def test_in_process_loading_takes_no_context_and_workers_never_plain_fork() -> None:
    assert loader_context(0) is None
    assert loader_context(3).get_start_method() in {"forkserver", "spawn"}

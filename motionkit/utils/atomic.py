"""Atomic file and folder writes.

Writers produce their output under a temporary name in the destination folder and move it into place
only once it is complete. An interrupted run (exception, Ctrl-C) therefore leaves no half-written file
behind and never replaces an existing good file with a partial one. The temporary lives in the same
folder because ``os.replace`` is only atomic within one filesystem.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _temp_sibling(target: Path, tag: str = "tmp") -> Path:
    # Hidden name so globs over the folder skip it; the suffix is kept because some writers (PIL, FFmpeg)
    # pick the format from it.
    return target.with_name(f".{target.stem}.{tag}-{uuid.uuid4().hex[:8]}{target.suffix}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` onto ``dst``. A non-empty folder cannot be the target of ``os.replace``, so an
    existing one is first renamed aside and restored if the swap fails."""
    if not dst.exists():
        os.replace(src, dst)
        return
    if not dst.is_dir():
        raise IsADirectoryError(f"{dst}: a file is in the way of the output folder; remove it or pick another path")
    backup = _temp_sibling(dst, "old")
    os.replace(dst, backup)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(backup, dst)
        raise
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, is_dir: bool = False, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on normal exit move it onto ``target``.

    For a file (``is_dir=False``) the yielded path does not exist yet: the caller creates it (e.g.
    ``torch.save(obj, tmp)``). For a folder (``is_dir=True``) an empty folder is created and yielded.
    If the body raises, the temporary is deleted and ``target`` is left exactly as it was.
    ``durable`` flushes a written file to disk before the rename so a power loss cannot expose an empty file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(target)
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
        if is_dir:
            if not tmp.is_dir():
                raise FileNotFoundError(f"{tmp}: the writer removed its temporary folder; nothing to move into place")
            _replace_dir(tmp, target)
        else:
            if not tmp.exists():
                raise FileNotFoundError(f"{target}: the writer produced no file; nothing to move into place")
            if durable:
                _fsync_file(tmp)
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            _remove(tmp)


@contextlib.contextmanager
def atomic_write(
    target: str | os.PathLike[str], mode: str = "w", *, durable: bool = True, **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``target`` for writing; on normal exit move it onto ``target``.

    ``mode`` is ``"w"`` (text, UTF-8 unless ``encoding`` is given) or ``"wb"``. On an exception the
    temporary is removed and ``target`` is untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(target, durable=False) as tmp:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())

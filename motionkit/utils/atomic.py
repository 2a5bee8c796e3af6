"""Atomic file and folder writes.

Writers produce their output under a temporary name in the destination folder and move it into place
only once it is complete. An interrupted run (exception, Ctrl-C) therefore leaves no half-written file
behind and never replaces an existing good file with a partial one. The temporary lives in the same
folder because ``os.replace`` is only atomic within one filesystem.

A run killed outright (``kill -9``, power loss) cannot clean up after itself, so temporaries carry the
writer's process id: the next write to the same target removes temporaries whose writer is gone, and a
folder swap cut between its two renames is rolled back (the previous folder is restored) before the new
write starts. ``clean_stale_temps`` does the same for a whole folder (e.g. a checkpoint root on resume).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

# Temporaries of a writer that can no longer be asked (another machine on a shared disk, or a name
# without a process id) count as abandoned after this long.
STALE_AFTER_S = 24 * 3600
# ".{stem}.{tag}-{pid}-{hex}{suffix}"; names from before process ids were recorded lack the pid.
_TEMP_NAME = re.compile(r"^\.(?P<stem>.*)\.(?P<tag>tmp|old)-(?:(?P<pid>\d+)-)?[0-9a-f]{8}(?P<suffix>.*)$")


def temp_sibling(target: Path, tag: str = "tmp") -> Path:
    """A temporary name next to ``target`` carrying this process's id (what ``clean_stale_temps`` recognises),
    for writers that build an output in several steps themselves."""
    # Hidden name so globs over the folder skip it; the suffix is kept because some writers (PIL, FFmpeg)
    # pick the format from it.
    return target.with_name(f".{target.stem}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}{target.suffix}")


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _abandoned(path: Path, pid: str | None) -> bool:
    """A temporary whose writer has died (same machine) or that is older than ``STALE_AFTER_S``."""
    if pid is not None and not _writer_alive(int(pid)):
        return True
    try:
        return time.time() - path.lstat().st_mtime > STALE_AFTER_S
    except FileNotFoundError:
        return False


def _leftovers(folder: Path, target: Path | None = None) -> Iterator[tuple[Path, re.Match[str]]]:
    """Abandoned temporaries and backups in ``folder`` (only ``target``'s when given)."""
    pattern = f".{target.stem}.*" if target is not None else ".*"
    for entry in folder.glob(pattern):
        match = _TEMP_NAME.match(entry.name)
        if match is None or (target is not None and (match["stem"], match["suffix"]) != (target.stem, target.suffix)):
            continue
        if _abandoned(entry, match["pid"]):
            yield entry, match


def _recover(folder: Path, target: Path | None = None) -> list[Path]:
    """Remove abandoned temporaries; where a folder swap died between its renames (target gone, backup
    left), put the backup back first. Returns what was removed or restored."""
    handled = []
    leftovers = sorted(_leftovers(folder, target), key=lambda item: item[0].lstat().st_mtime, reverse=True)
    for entry, match in leftovers:
        original = folder / f"{match['stem']}{match['suffix']}"
        if match["tag"] == "old" and not original.exists():
            os.replace(entry, original)  # roll back: the newest backup becomes the output again
        else:
            _remove(entry)
        handled.append(entry)
    return handled


def output_name(path: str | os.PathLike[str]) -> Path:
    """The output a temporary stands for (``.clip.tmp-…mp4`` -> ``clip.mp4``); other paths unchanged."""
    path = Path(path)
    match = _TEMP_NAME.match(path.name)
    return path.with_name(f"{match['stem']}{match['suffix']}") if match else path


def clean_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Clean up after writers that were killed in ``folder``: abandoned temporaries are deleted, and an
    output folder missing after a cut swap is restored from its backup. Returns the entries handled."""
    folder = Path(folder)
    return _recover(folder) if folder.is_dir() else []


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
    backup = temp_sibling(dst, "old")
    os.replace(dst, backup)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(backup, dst)
        raise
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(
    target: str | os.PathLike[str],
    *,
    is_dir: bool = False,
    durable: bool = True,
    before_replace: Callable[[], None] | None = None,
) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on normal exit move it onto ``target``.

    For a file (``is_dir=False``) the yielded path does not exist yet: the caller creates it (e.g.
    ``torch.save(obj, tmp)``). For a folder (``is_dir=True``) an empty folder is created and yielded.
    If the body raises, the temporary is deleted and ``target`` is left exactly as it was.
    ``durable`` flushes a written file to disk before the rename so a power loss cannot expose an empty file.
    ``before_replace`` runs once the output is complete, just before it moves into place (e.g. to drop a
    file that describes the old output). Leftovers of killed writes to ``target`` are cleaned first.
    """
    target = Path(target)
    if not is_dir and target.is_dir():
        raise IsADirectoryError(f"{target}: a folder is in the way of the output file; remove it or give another path")
    target.parent.mkdir(parents=True, exist_ok=True)
    _recover(target.parent, target)
    tmp = temp_sibling(target)
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
        if before_replace is not None and (tmp.is_dir() if is_dir else tmp.exists()):
            before_replace()
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

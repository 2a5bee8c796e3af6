"""User-facing errors: each carries one line that names the problem and the fix."""

import os
from collections.abc import Callable, Mapping
from typing import Any


class MotionkitError(ValueError):
    """Bad input from the user (file, layout, argument). The CLI prints it as one line, no traceback."""


class LayoutMismatchError(MotionkitError, ValueError):
    """An adapter's block layout does not fit the UNet (or the checkpoint) it is used with."""


class FormatError(MotionkitError, ValueError):
    """A file is unreadable, corrupt, unsafe, or of a layout motionkit does not recognise."""


class BackendUnavailableError(MotionkitError, RuntimeError):
    """An attention backend was asked for explicitly but cannot run here."""


def check_each(values: Mapping[str, Any], checks: Mapping[str, Callable[[Any], Any]], where: str) -> None:
    """Run ``checks[key]`` on ``values[key]`` for each key present, in ``checks``' order; the first fault is
    raised as one line that starts with ``where``."""
    try:
        for key, check in checks.items():
            if key in values:
                check(values[key])
    except MotionkitError as err:
        raise MotionkitError(f"{where}: {err}") from None


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk is full: an ``OSError`` with ``ENOSPC`` (PyAV's errors are ``OSError``
    too), or a writer that reports it only in its message (safetensors' ``SafetensorError``)."""
    import errno

    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    return "No space left on device" in str(err) or "os error 28" in str(err)


def disk_full_message(err: BaseException) -> str:
    """One line for a full disk, naming the file when the error knows it."""
    from motionkit.utils.atomic import output_name

    where = getattr(err, "filename", None)
    at = f" while writing {output_name(where)}" if where else ""
    return f"no space left on device{at}: free some space or write elsewhere (files that were there are unchanged)"


def os_error_message(err: OSError) -> str:
    """One line for an error the operating system raised: the path (an output, never its temporary name) and a
    fix, instead of ``[Errno N] ...``. Errors motionkit raised with its own message keep it."""
    import errno

    from motionkit.utils.atomic import output_name

    if err.errno is None or err.strerror is None:
        return str(err)
    fixes = {
        errno.ENOENT: "no such file or folder; check the path",
        errno.EISDIR: "is a folder where a file is needed; give a file path, or remove the folder",
        errno.ENOTDIR: "a file is where the path needs a folder; check the path",
        errno.EACCES: "permission denied; check the permissions or use another path",
        errno.EPERM: "operation not permitted; check the permissions or use another path",
        errno.ELOOP: "is a symlink loop; point the link at a real file or give the file's own path",
        errno.EEXIST: "already exists; remove it or give another path",
        errno.ENAMETOOLONG: "the name is too long; use a shorter path",
        errno.EROFS: "is on a read-only file system; write elsewhere",
    }
    name = err.filename2 if err.errno == errno.EISDIR and err.filename2 else err.filename
    where = f"{output_name(os.fsdecode(name))}: " if name is not None and not isinstance(name, int) else ""
    return where + fixes.get(err.errno, f"{err.strerror.lower()}; check the path")


MAX_ECHO = 40  # characters of a user's value repeated in a message


def echo(value: object) -> str:
    """A user's value as a message may repeat it: its repr (numbers as written), cut short."""
    text = repr(value) if not isinstance(value, (int, float)) or isinstance(value, bool) else str(value)
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."

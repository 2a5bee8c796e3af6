"""User-facing errors: each carries one line that names the problem and the fix."""


class MotionkitError(ValueError):
    """Bad input from the user (file, layout, argument). The CLI prints it as one line, no traceback."""


class LayoutMismatchError(MotionkitError, ValueError):
    """An adapter's block layout does not fit the UNet (or the checkpoint) it is used with."""


class FormatError(MotionkitError, ValueError):
    """A file is unreadable, corrupt, unsafe, or of a layout motionkit does not recognise."""


class BackendUnavailableError(MotionkitError, RuntimeError):
    """An attention backend was asked for explicitly but cannot run here."""


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

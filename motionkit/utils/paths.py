"""Why a path the user named cannot be used, in words: a missing file, a symlink loop, a broken link."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def missing_reason(path: str | os.PathLike[str]) -> str | None:
    """``None`` when ``path`` resolves to something; else what is wrong with it (``Path.exists`` says only False)."""
    path = Path(path)
    try:
        path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symlink loop (the link leads back to itself)"
        if path.is_symlink():
            return f"is a broken symlink (to {os.readlink(path)}, which does not exist)"
        if err.errno == errno.ENOTDIR:
            return "has a file where the path needs a folder"
        if err.errno == errno.ENOENT:
            return "does not exist"
        return (err.strerror or type(err).__name__).lower()
    return None


def missing_path_error(path: str | os.PathLike[str], what: str = "file or folder", flag: str | None = None) -> FileNotFoundError:
    """One-line ``FileNotFoundError`` naming what is wrong with ``path`` and the fix (``flag``: the option it came from)."""
    reason = missing_reason(path) or "does not exist"
    check = f"check {flag}" if flag else "check the path"
    if reason == "does not exist":
        return FileNotFoundError(f"{path}: no such {what}; {check}")
    if "symlink" in reason:
        own = f"give {flag} the {what}'s own path" if flag else f"use the {what}'s own path"
        return FileNotFoundError(f"{path}: {reason}; point the link at a real {what} or {own}")
    return FileNotFoundError(f"{path}: {reason}; {check}")

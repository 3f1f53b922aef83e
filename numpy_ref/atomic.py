"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written one.

Used for the downloaded corpus, checkpoints and every file of a run directory.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to ``path``.

    The temporary file gets a fresh name in the target's folder (``os.replace`` is atomic only
    within one file system) and is opened exclusively with plain ``open``, so it has the
    permissions the umask asks for (``mkstemp`` would make it 0600). Its bytes are flushed and
    fsynced before the rename, and the folder after it. On any error the temporary file is
    removed and ``path`` is left as it was.

    Args:
        path: the file to create or replace.
        write: writes the whole content to the binary file object it is given.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable too (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

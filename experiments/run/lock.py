"""The lock of a run directory: one writer for a command's whole life (``fcntl.flock`` on
``DIR/.lock``, which names its holder; the kernel drops it when the holder ends, however it ends).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from experiments.run.config import ConfigError
from experiments.run.rundir import LOCK, STAGING, has_content


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], create: bool = True, name: str = LOCK) -> Iterator[None]:
    """Hold the exclusive lock of the run directory ``path`` for the ``with`` block.

    The lock is ``fcntl.flock`` on ``path/.lock``, which names its holder (process, host,
    command); the kernel releases it when the holder ends, however it ends, so the lock of a
    dead process is simply taken over. A folder made here for the lock (``create``) is removed
    again on the way out if nothing else was written into it.

    Args:
        path: the run directory.
        create: make the folder when it is missing (a new run); else (``--resume``) a missing
            folder is not locked (the resume itself reports it).
        name: the lock file (one per process of a population across processes).

    Raises:
        ConfigError: another process holds the lock (named), or the folder is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir() or not path.exists() and not create:
        yield  # refused, or reported, by the checks of the run directory
        return
    made = next((p for p in (path, *path.parents) if p.parent.exists()), path)
    made = None if path.exists() else made  # the topmost folder this makes
    flag = "--resume" if not create else "--out"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = _acquire(path / name)
    except OSError as err:
        _remove_made(path, made, name)
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            f"{flag} {path} is not writable ({reason}): choose a folder you can write to"
        ) from None
    except ConfigError:
        _remove_made(path, made, name)
        raise
    try:
        yield
    finally:
        _remove_made(path, made, name)
        os.close(fd)  # releases the lock


def _acquire(file: Path) -> int:
    """Open and lock ``file`` (ConfigError naming the holder if another process holds it)."""
    while True:
        fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"run directory {file.parent} is in use by {holder}: wait until it ends, or "
                f"choose another --out"
            ) from None
        except OSError:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(file).st_ino
        except FileNotFoundError:  # removed by the holder that just ended: lock a new one
            same = False
        if same:
            break
        os.close(fd)
    command = " ".join(sys.argv) if sys.argv and sys.argv[0] else "python"
    holder = f"process {os.getpid()} on {socket.gethostname()} ({command})"
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder.encode("utf-8") + b"\n", 0)
    return fd


def _remove_made(path: Path, made: Path | None, name: str) -> None:
    """Remove the folders from ``path`` up to ``made`` made for the lock, if they hold nothing
    else (an emptied staging folder included)."""
    if made is None or has_content(path):
        return
    with contextlib.suppress(OSError):
        (path / STAGING).rmdir()
    with contextlib.suppress(OSError):
        (path / name).unlink(missing_ok=True)
        for folder in (path, *path.parents):
            folder.rmdir()
            if folder == made:
                break

"""SIGINT and SIGTERM as a request to stop, answered at the next safe point.

Python's default turns SIGINT into a ``KeyboardInterrupt`` raised wherever the interpreter happens
to be: in the middle of importing JAX, inside a callback from XLA's C++ (which can abort the
process), or between writing a file and renaming it. While :func:`catching` is active, both
signals only set a :class:`StopFlag`; the command checks it where stopping is safe (after
start-up, between two minibatches) and ends with a checkpoint and exit code ``128 + signal``
(130 for SIGINT, 143 for SIGTERM). A second signal stops the process at once.

Commands with nothing to save (``gradcheck``, ``gradient_flow``, ``corpus_stats``, ``bench``,
``table``) stop at the first signal instead, :func:`stopping`: one line, the temporary files
registered with :func:`removing` deleted, exit ``128 + signal``, never a ``KeyboardInterrupt``
raised inside JAX (which aborted gradcheck, or was swallowed there and ended with exit 0).
Every command's entry point calls :func:`catch_early` first, so that a signal during its imports
is kept for the block that follows.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """Set by the first SIGINT or SIGTERM; ``flag()`` is True from then on."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


_EARLY = StopFlag()  # set by a signal that arrives before the command's block (catch_early)


def catch_early() -> None:
    """From the first instant of a command (before its imports), only record SIGINT and SIGTERM;
    :func:`catching` then finds the flag already set and the command stops after start-up."""

    def record(signum: int, frame: object) -> None:
        _EARLY.signum = _EARLY.signum or signum

    for s in SIGNALS:
        signal.signal(s, record)


@contextmanager
def catching(prog: str) -> Iterator[StopFlag]:
    """Within the block, SIGINT and SIGTERM set the yielded flag (previous handlers restored).

    Outside the main thread (where handlers cannot be installed) the flag stays unset.
    """
    flag = StopFlag()
    flag.signum = _EARLY.signum

    def handle(signum: int, frame: object) -> None:
        if flag.signum is not None:
            print(
                f"{prog}: {signal.Signals(signum).name} again: stopping now; the last "
                f"checkpoint on disk is kept",
                file=sys.stderr,
                flush=True,
            )
            os._exit(128 + signum)
        flag.signum = signum

    try:
        previous = {s: signal.signal(s, handle) for s in SIGNALS}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


_REMOVE: list[Callable[[], None]] = []  # what a stop deletes (temporary files), newest last


@contextmanager
def removing(remove: Callable[[], None]) -> Iterator[None]:
    """Within the block, a stop by :func:`stopping` calls ``remove()`` before the process exits
    (e.g. deletes the block's temporary folder, which its ``finally`` would never reach)."""
    _REMOVE.append(remove)
    try:
        yield
    finally:
        _REMOVE.remove(remove)


@contextmanager
def stopping(prog: str) -> Iterator[None]:
    """Within the block, the first SIGINT or SIGTERM (or one :func:`catch_early` recorded before
    it) ends the process at once: the callbacks of :func:`removing` run, one line on stderr
    (``prog: SIGINT: stopped, nothing was written``), exit ``128 + signal``.

    Outside the main thread (where handlers cannot be installed) nothing changes.
    """

    def stop(signum: int, frame: object = None) -> None:
        for remove in reversed(_REMOVE):
            try:
                remove()
            except OSError:
                pass
        sys.stdout.flush()
        print(
            f"{prog}: {signal.Signals(signum).name}: stopped, nothing was written",
            file=sys.stderr,
            flush=True,
        )
        os._exit(128 + signum)

    if _EARLY.signum is not None:
        stop(_EARLY.signum)
    try:
        previous = {s: signal.signal(s, stop) for s in SIGNALS}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

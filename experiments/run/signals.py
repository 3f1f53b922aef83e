"""SIGINT and SIGTERM as a request to stop, answered at the next safe point.

Python's default turns SIGINT into a ``KeyboardInterrupt`` raised wherever the interpreter happens
to be: in the middle of importing JAX, inside a callback from XLA's C++ (which can abort the
process), or between writing a file and renaming it. While :func:`catching` is active, both
signals only set a :class:`StopFlag`; the command checks it where stopping is safe (after
start-up, between two minibatches) and ends with a checkpoint and exit code ``128 + signal``
(130 for SIGINT, 143 for SIGTERM). A second signal stops the process at once.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
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
            print(f"{prog}: {signal.Signals(signum).name} again: stopping now; the last "
                  f"checkpoint on disk is kept", file=sys.stderr, flush=True)  # fmt: skip
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

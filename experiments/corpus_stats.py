"""``python -m experiments.corpus_stats``: the command of :mod:`experiments.study.corpus_stats`."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from experiments.study.corpus_stats import main

    return main(argv)


if __name__ == "__main__":
    from experiments.run.signals import catch_early

    catch_early()  # a signal during the imports: one line and exit 130 or 143, no traceback
    sys.exit(main())

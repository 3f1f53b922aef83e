"""d2l 9.2, long short-term memory: 256 hidden units, lr 1, 500 epochs, sequential iteration.

``--impl torch`` runs nn.LSTM (``--torch-model scratch`` for the book's scratch LSTM in PyTorch).

    python -m experiments.lstm --quick                # numpy, 10 epochs, a first look
    python -m experiments.lstm --impl jax             # the book's full run with rnn_jax
    python -m experiments.lstm --impl torch --device cuda

All flags: ``--help``; all of them are described in experiments/run/flags.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

SECTION = "lstm"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from experiments.sections import command

    return command.main(SECTION, argv)


if __name__ == "__main__":
    from experiments.run.signals import catch_early

    catch_early()  # a Ctrl-C during the imports: one line and exit 130, never a traceback
    sys.exit(main())

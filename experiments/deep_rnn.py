"""d2l 9.3, a deep RNN: a 2-layer LSTM, 256 hidden units, lr 2, 500 epochs, sequential iteration.

The book's learning rate here is 2 (``num_epochs, lr = 500, 2`` in deep-rnn.md of d2l-en 0.17 /
d2l-zh 2.0). ``--impl torch`` runs a 2-layer nn.LSTM.

    python -m experiments.deep_rnn --quick                # numpy, 10 epochs, a first look
    python -m experiments.deep_rnn --impl jax             # the book's full run with rnn_jax
    python -m experiments.deep_rnn --impl torch --device cuda

All flags: ``--help``; all of them are described in experiments/run/flags.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

SECTION = "deep_rnn"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from experiments.sections import command

    return command.main(SECTION, argv)


if __name__ == "__main__":
    from experiments.run.signals import catch_early

    catch_early()  # a Ctrl-C during the imports: one line and exit 130, never a traceback
    sys.exit(main())

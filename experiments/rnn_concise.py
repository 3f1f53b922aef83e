"""d2l 8.6, the concise RNN: 256 hidden units, batch 32, 35 steps, lr 1, theta 1, 500 epochs.

numpy_ref and rnn_jax have one RNN, so only the size differs from 8.5; ``--impl torch`` runs
PyTorch's nn.RNN with a one-hot input and a Linear output, as the book.

    python -m experiments.rnn_concise --quick                # numpy, 10 epochs, a first look
    python -m experiments.rnn_concise --impl jax             # the book's full run with rnn_jax
    python -m experiments.rnn_concise --impl torch --device cuda

All flags: ``--help``; all of them are described in experiments/run/flags.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

SECTION = "rnn_concise"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from experiments.sections import command

    return command.main(SECTION, argv)


if __name__ == "__main__":
    from experiments.run.signals import catch_early

    catch_early()  # a Ctrl-C during the imports: one line and exit 130, never a traceback
    sys.exit(main())

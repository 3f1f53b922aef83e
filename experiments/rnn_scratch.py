"""d2l 8.5, an RNN from scratch: 512 hidden units, batch 32, 35 steps, lr 1, theta 1, 500 epochs.

The book trains it twice, with sequential and with random iteration; by default this script does
the same, one after the other, into runs/rnn_scratch-seq-<impl> and runs/rnn_scratch-random-<impl>
(``--iter seq``, ``--iter random`` or ``--iter book-random`` runs one; see
experiments/run/config.py for what the book's random run really does). ``--impl torch`` runs the
book's scratch model written in PyTorch (``--torch-model concise`` for nn.RNN).

    python -m experiments.rnn_scratch --quick                # numpy, 10 epochs, a first look
    python -m experiments.rnn_scratch --impl jax             # the book's full run with rnn_jax
    python -m experiments.rnn_scratch --impl torch --device cuda

All flags: ``--help``; all of them are described in experiments/run/flags.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

SECTION = "rnn_scratch"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from experiments.sections import command

    return command.main(SECTION, argv)


if __name__ == "__main__":
    from experiments.run.signals import catch_early

    catch_early()  # a Ctrl-C during the imports: one line and exit 130, never a traceback
    sys.exit(main())

"""d2l 9.1, gated recurrent units: 256 hidden units, lr 1, 500 epochs, sequential iteration.

The book's GRU applies the reset gate before the recurrent product (``--gru-reset before``, the
default); PyTorch's nn.GRU applies it after. ``--impl torch`` therefore runs the book's scratch GRU
written in PyTorch by default, and nn.GRU with ``--gru-reset after`` (or ``--torch-model scratch``
to compare the two PyTorch models on the "after" variant).

    python -m experiments.gru --quick                # numpy, 10 epochs, a first look
    python -m experiments.gru --impl jax             # the book's full run with rnn_jax
    python -m experiments.gru --impl torch --device cuda

All flags: ``--help``; all of them are described in experiments/run/flags.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

SECTION = "gru"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from experiments.sections import command

    return command.main(SECTION, argv)


if __name__ == "__main__":
    from experiments.run.signals import catch_early

    catch_early()  # a Ctrl-C during the imports: one line and exit 130, never a traceback
    sys.exit(main())

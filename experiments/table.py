"""``python -m experiments.table``: the command of :mod:`experiments.analysis.table`."""

import sys

from experiments.analysis.table import main

if __name__ == "__main__":
    sys.exit(main())

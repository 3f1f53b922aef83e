"""``python -m experiments.compare``: the command of :mod:`experiments.analysis.compare`."""

import sys

from experiments.analysis.compare import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m experiments.bench``: the command of :mod:`experiments.benchmarks.bench`."""

import sys

from experiments.benchmarks.bench import main

if __name__ == "__main__":
    sys.exit(main())

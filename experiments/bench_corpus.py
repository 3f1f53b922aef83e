"""``python -m experiments.bench_corpus``: the command of
:mod:`experiments.benchmarks.bench_corpus`.
"""

import sys

from experiments.benchmarks.bench_corpus import main

if __name__ == "__main__":
    sys.exit(main())

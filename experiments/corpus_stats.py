"""``python -m experiments.corpus_stats``: the command of :mod:`experiments.study.corpus_stats`."""

import sys

from experiments.study.corpus_stats import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m experiments.corpus_stats``: the command of :mod:`experiments.study.corpus_stats`."""

import sys

if __name__ == "__main__":
    from experiments.run.signals import catch_early

    catch_early()  # a signal during the imports: one line and exit 130 or 143, no traceback
    from experiments.study.corpus_stats import main

    sys.exit(main())

"""``python -m experiments.bench_corpus``: the command of
:mod:`experiments.benchmarks.bench_corpus`.
"""

import sys

if __name__ == "__main__":
    from experiments.run.signals import catch_early

    catch_early()  # a signal during the imports: one line and exit 130 or 143, no traceback
    from experiments.benchmarks.bench_corpus import main

    sys.exit(main())

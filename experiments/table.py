"""``python -m experiments.table``: the command of :mod:`experiments.analysis.table`."""

import sys

if __name__ == "__main__":
    from experiments.run.signals import catch_early

    catch_early()  # a signal during the imports: one line and exit 130 or 143, no traceback
    from experiments.analysis.table import main

    sys.exit(main())

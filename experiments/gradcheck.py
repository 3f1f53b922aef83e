"""``python -m experiments.gradcheck``: the command of :mod:`experiments.study.gradcheck`."""

import sys

if __name__ == "__main__":
    from experiments.run.signals import catch_early

    catch_early()  # a signal during the imports: one line and exit 130 or 143, no traceback
    from experiments.study.gradcheck import main

    sys.exit(main())

"""``python -m experiments.gradcheck``: the command of :mod:`experiments.study.gradcheck`."""

import sys

from experiments.study.gradcheck import main

if __name__ == "__main__":
    sys.exit(main())

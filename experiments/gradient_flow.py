"""``python -m experiments.gradient_flow``: the command of
:mod:`experiments.study.gradient_flow`.
"""

import sys

from experiments.study.gradient_flow import main

if __name__ == "__main__":
    sys.exit(main())

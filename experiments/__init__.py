"""The commands (``python -m experiments.<name>``) over the rooms of this package.

Python imports this file before the command's module, so a command started with a Python that
lacks the project's dependencies (outside ``.venv``) says so in one line, not in a traceback.
"""

import importlib.util
import sys

_NEEDED = ("numpy", "jax", "optax", "matplotlib", "tqdm", "threadpoolctl")  # pyproject.toml

if sys.argv[:1] == ["-m"]:  # started as `python -m experiments...` (runpy's argv while it imports)
    _missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
    if _missing:
        print(
            f"experiments: {', '.join(_missing)} not installed for {sys.executable}: "
            "run `make venv`, then `.venv/bin/python -m experiments...` (or activate .venv)",
            file=sys.stderr,
        )
        raise SystemExit(1)

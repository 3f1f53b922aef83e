"""The two checks every layer of the project makes of its numbers, written once.

``is_int(value, minimum)`` and ``is_positive(value)`` answer; ``check_int`` and ``check_positive``
raise a ``ValueError`` that names the value. The library calls the ``check_*`` forms; the command
line uses the ``is_*`` forms to word its own messages (with the flag's name).
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def is_int(value: Any, minimum: int = 1) -> bool:
    """True for an integer (Python or NumPy, not a bool) of at least ``minimum``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def is_positive(value: Any) -> bool:
    """True for a finite real number (not a bool) greater than zero."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``int(value)``, or ``ValueError("<name> must be an integer >= <minimum>, got ...")``."""
    if not is_int(value, minimum):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive(name: str, value: Any, hint: str = "") -> float:
    """``float(value)``, or ``ValueError("<name> must be a finite number > 0, got ...")``."""
    if not is_positive(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}{hint}")
    return float(value)

"""Results as distributions: mean, standard deviation and Welch's t-test.

``welch(a, b)`` compares two samples with possibly different variances (Welch 1947): the statistic
``t = (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b)`` with the Welch-Satterthwaite degrees of
freedom, and the two-sided p-value from Student's t distribution, all three from SciPy's
``scipy.stats.ttest_ind(a, b, equal_var=False)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05  # the significance level of the verdict


@dataclass(frozen=True)
class Spread:
    """A sample's n, mean, standard deviation (n - 1 in the denominator), min and max."""

    n: int
    mean: float
    sd: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        values = [float(v) for v in values]
        n = len(values)
        if n == 0:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan)
        mean = sum(values) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        return cls(n, mean, sd, min(values), max(values))

    def text(self, digits: int = 2) -> str:
        """``1.04 ± 0.01 (5)``."""
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f} ({self.n})"

    def to_dict(self) -> dict[str, float]:
        return {"n": self.n, "mean": self.mean, "sd": self.sd, "min": self.min, "max": self.max}


@dataclass(frozen=True)
class Welch:
    """Welch's t-test of two samples: the difference of means, t, the degrees of freedom, p."""

    difference: float
    t: float
    df: float
    p: float

    @property
    def verdict(self) -> str:
        return "within seed noise" if self.p >= ALPHA else "differs"


def welch(a: Sequence[float], b: Sequence[float]) -> Welch:
    """Welch's t-test of ``mean(a) - mean(b)`` (each sample of at least two values)."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    sa, sb = Spread.of(a), Spread.of(b)
    if sa.n < 2 or sb.n < 2:
        raise ValueError("Welch's t-test needs at least two values in each sample")
    va, vb = sa.sd**2 / sa.n, sb.sd**2 / sb.n
    difference = sa.mean - sb.mean
    if va + vb == 0.0:  # two constant samples, where SciPy's t is 0/0: equal, or apart for sure
        t = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
        return Welch(difference, t, float(sa.n + sb.n - 2), 1.0 if difference == 0.0 else 0.0)
    from scipy import stats  # here: importing scipy.stats takes seconds, and only comparisons test

    result = stats.ttest_ind(a, b, equal_var=False)
    return Welch(difference, float(result.statistic), float(result.df), float(result.pvalue))

"""Results as distributions: mean, standard deviation and Welch's t-test, in the standard library.

``welch(a, b)`` compares two samples with possibly different variances (Welch 1947): the statistic
``t = (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b)`` with the Welch-Satterthwaite degrees of
freedom, and the two-sided p-value from Student's t distribution, whose CDF is written with the
regularized incomplete beta function ``I_x(a, b)`` (evaluated by Lentz's continued fraction,
Numerical Recipes 6.4), since the project depends on no statistics package.
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


def _betacf(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):  # fmt: skip
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)``, x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(log_front + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """``P(|T| >= |t|)`` for Student's t with ``df`` degrees of freedom."""
    if not math.isfinite(t):
        return 0.0
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


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
    sa, sb = Spread.of(a), Spread.of(b)
    if sa.n < 2 or sb.n < 2:
        raise ValueError("Welch's t-test needs at least two values in each sample")
    va, vb = sa.sd**2 / sa.n, sb.sd**2 / sb.n
    difference = sa.mean - sb.mean
    if va + vb == 0.0:
        t = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
        return Welch(difference, t, float(sa.n + sb.n - 2), 1.0 if difference == 0.0 else 0.0)
    t = difference / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    return Welch(difference, t, df, t_two_sided_p(t, df))

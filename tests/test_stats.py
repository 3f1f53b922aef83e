"""experiments.populations.stats: a sample's spread and Welch's t-test against published values."""

from __future__ import annotations

import math

import pytest

from experiments.populations.stats import Spread, welch

# Student (1908), "The probable error of a mean", Biometrika 6(1), the table of Cushny & Peebles'
# soporifics: extra hours of sleep of 10 patients under each of two drugs (R's `sleep` data set).
DRUG_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_welch_gives_the_published_t_df_and_p_of_the_sleep_data() -> None:
    """The two drugs as independent samples: R's documented ``t.test(extra ~ group, data = sleep)``
    (Welch's test is R's default) prints t = -1.8608, df = 17.776, p-value = 0.07939, mean of
    group 1 0.75, of group 2 2.33; an implementation written apart from SciPy's.

    Tolerances: half a unit in the last printed digit of each published value.
    """
    result = welch(DRUG_1, DRUG_2)
    assert result.difference == pytest.approx(0.75 - 2.33, abs=5e-15)
    assert result.t == pytest.approx(-1.8608, abs=5e-5)
    assert result.df == pytest.approx(17.776, abs=5e-4)
    assert result.p == pytest.approx(0.07939, abs=5e-6)
    assert result.verdict == "within seed noise"  # p >= 0.05
    swapped = welch(DRUG_2, DRUG_1)  # the test is two-sided: only the sign of t changes
    assert (swapped.t, swapped.df, swapped.p) == pytest.approx((-result.t, result.df, result.p))


def test_welch_of_constant_samples_is_certain_and_of_one_value_is_refused() -> None:
    same = welch([1.0, 1.0], [1.0, 1.0, 1.0])
    assert (same.t, same.df, same.p, same.verdict) == (0.0, 3.0, 1.0, "within seed noise")
    apart = welch([1.0, 1.0], [2.0, 2.0])
    assert (apart.t, apart.p, apart.verdict) == (-math.inf, 0.0, "differs")
    with pytest.raises(ValueError, match="at least two values in each sample"):
        welch([1.0], [1.0, 2.0])


def test_spread_uses_n_minus_1() -> None:
    spread = Spread.of(DRUG_1)
    assert (spread.n, spread.min, spread.max) == (10, -1.6, 3.7)
    assert spread.mean == pytest.approx(0.75, abs=1e-15)
    # the squared deviations from 0.75 sum to 28.805 (by hand), over n - 1 = 9
    assert spread.sd == pytest.approx(math.sqrt(28.805 / 9), rel=1e-12)
    assert spread.text() == "0.75 ± 1.79 (10)"
